/* Image manifests: size, chunk size and one SHA-256 per chunk, published by the seed and
 * checked by every relay before it caches or serves a chunk. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>	/* BLKGETSIZE64 */
#include <sys/stat.h>
#include <unistd.h>

#include "iscsi/manifest.h"
#include "lib/log.h"
#include "lib/net.h"

#define MANIFEST_FILE_MAX (64u << 20)	/* 1 PiB in 64 MiB chunks needs far less */

static const char manifest_usage[] =
	"usage: virtman manifest IMAGE -o FILE [--chunk-size BYTES]\n"
	"\n"
	"Writes the manifest of a raw image: its size, the chunk size and one SHA-256 per\n"
	"chunk. Relays verify every chunk they fetch against it. The image is digested as\n"
	"it is served: its size rounded up to 512 bytes, the tail padded with zeros.\n"
	"\n"
	"  -o, --output FILE     where to write (replaced atomically)\n"
	"  --chunk-size BYTES    a power of two from 4096 to 67108864 (default 262144)\n"
	"  -h, --help            this text\n";

/* Takes the next line of [*p, end) without its newline; NULL at the end. */
static const char *manifest_line(const char **p, const char *end, size_t *len)
{
	const char *start = *p, *nl;

	if (start >= end)
		return NULL;
	nl = memchr(start, '\n', (size_t)(end - start));
	*len = (size_t)((nl ? nl : end) - start);
	*p = nl ? nl + 1 : end;
	return start;
}

/* Parses "key NUMBER" into v within [min, max]. */
static int manifest_field(const char *line, size_t len, const char *key, uint64_t min,
			  uint64_t max, uint64_t *v)
{
	char buf[64];
	size_t klen = strlen(key);

	if (len <= klen + 1 || len >= sizeof buf || memcmp(line, key, klen) != 0 ||
	    line[klen] != ' ')
		return -EINVAL;
	memcpy(buf, line + klen + 1, len - klen - 1);
	buf[len - klen - 1] = '\0';
	return parse_u64(buf, min, max, v);
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int manifest_parse(const char *text, size_t len, struct manifest *m, char *err, size_t errlen)
{
	const char *p = text, *end = text + len, *line;
	uint64_t size, chunk, nchunks;
	size_t llen;

	memset(m, 0, sizeof *m);
	line = manifest_line(&p, end, &llen);
	if (!line || llen != strlen(MANIFEST_MAGIC) || memcmp(line, MANIFEST_MAGIC, llen) != 0) {
		snprintf(err, errlen, "not a virtman manifest (first line must be \"%s\")",
			 MANIFEST_MAGIC);
		return -EINVAL;
	}
	line = manifest_line(&p, end, &llen);
	if (!line || manifest_field(line, llen, "size", 512, MANIFEST_SIZE_MAX, &size) < 0 ||
	    size % 512) {
		snprintf(err, errlen, "bad size line (a multiple of 512 up to 2^50 expected)");
		return -EINVAL;
	}
	line = manifest_line(&p, end, &llen);
	if (!line || manifest_field(line, llen, "chunk-size", MANIFEST_CHUNK_MIN,
				    MANIFEST_CHUNK_MAX, &chunk) < 0 || (chunk & (chunk - 1))) {
		snprintf(err, errlen, "bad chunk-size line (a power of two from %u to %u)",
			 MANIFEST_CHUNK_MIN, MANIFEST_CHUNK_MAX);
		return -EINVAL;
	}
	line = manifest_line(&p, end, &llen);
	if (!line || manifest_field(line, llen, "chunks", 1, UINT32_MAX, &nchunks) < 0 ||
	    nchunks != (size + chunk - 1) / chunk) {
		snprintf(err, errlen, "bad chunks line (must be size / chunk-size, rounded up)");
		return -EINVAL;
	}
	/* Every digest line is 65 bytes: refuse a count the text cannot hold before allocating. */
	if (nchunks > (uint64_t)(end - p) / 64) {
		snprintf(err, errlen, "manifest truncated: %llu digests announced",
			 (unsigned long long)nchunks);
		return -EINVAL;
	}
	m->digests = malloc(nchunks * SHA256_LEN);
	if (!m->digests) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < nchunks; i++) {
		line = manifest_line(&p, end, &llen);
		if (!line || llen != 2 * SHA256_LEN)
			goto bad_digest;
		for (int b = 0; b < SHA256_LEN; b++) {
			int hi = hex_digit(line[2 * b]), lo = hex_digit(line[2 * b + 1]);

			if (hi < 0 || lo < 0)
				goto bad_digest;
			m->digests[i][b] = (uint8_t)(hi << 4 | lo);
		}
		continue;
bad_digest:
		snprintf(err, errlen, "digest of chunk %llu is not 64 lower-case hex digits",
			 (unsigned long long)i);
		manifest_free(m);
		return -EINVAL;
	}
	if (p != end) {
		snprintf(err, errlen, "trailing data after the last digest");
		manifest_free(m);
		return -EINVAL;
	}
	m->size = size;
	m->chunk_size = (uint32_t)chunk;
	m->nchunks = (uint32_t)nchunks;
	sha256(text, len, m->id);
	return 0;
}

int manifest_load(const char *path, struct manifest *m, char *err, size_t errlen)
{
	struct stat st;
	char *text;
	ssize_t n;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > MANIFEST_FILE_MAX) {
		snprintf(err, errlen, "%s: not a regular file of at most %u bytes", path,
			 MANIFEST_FILE_MAX);
		close(fd);
		return -EINVAL;
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	n = pread(fd, text, (size_t)st.st_size, 0);
	close(fd);
	if (n != st.st_size) {
		free(text);
		snprintf(err, errlen, "cannot read %s", path);
		return -EIO;
	}
	rc = manifest_parse(text, (size_t)n, m, err, errlen);
	free(text);
	return rc;
}

void manifest_free(struct manifest *m)
{
	free(m->digests);
	m->digests = NULL;
}

uint32_t manifest_chunk_len(const struct manifest *m, uint32_t i)
{
	uint64_t off = (uint64_t)i * m->chunk_size;

	return off + m->chunk_size <= m->size ? m->chunk_size : (uint32_t)(m->size - off);
}

/* Digests the image chunk by chunk and writes the manifest text to out. */
static int manifest_write(int fd, uint64_t file_size, uint32_t chunk, FILE *out)
{
	uint64_t size = (file_size + 511) / 512 * 512;
	uint64_t nchunks = (size + chunk - 1) / chunk;
	uint8_t *buf = malloc(chunk), d[SHA256_LEN];

	if (!buf)
		return -ENOMEM;
	fprintf(out, "%s\nsize %llu\nchunk-size %u\nchunks %llu\n", MANIFEST_MAGIC,
		(unsigned long long)size, chunk, (unsigned long long)nchunks);
	for (uint64_t i = 0; i < nchunks; i++) {
		uint64_t off = i * chunk;
		uint32_t len = off + chunk <= size ? chunk : (uint32_t)(size - off), got = 0;

		while (got < len && off + got < file_size) {
			ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + got));

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				free(buf);
				return n < 0 ? -errno : -EIO;
			}
			got += (uint32_t)n;
		}
		memset(buf + got, 0, len - got);	/* the zero padding the target serves */
		sha256(buf, len, d);
		for (int b = 0; b < SHA256_LEN; b++)
			fprintf(out, "%02x", d[b]);
		fputc('\n', out);
	}
	free(buf);
	return ferror(out) ? -EIO : 0;
}

int manifest_create(const char *image, const char *output, uint32_t chunk, char *err,
		    size_t errlen)
{
	uint64_t size;
	char tmp[4096];
	struct stat st;
	FILE *out;
	int fd, rc;

	fd = open(image, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot open %s: %s", image, strerror(errno));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &size) < 0)
			size = 0;
	} else {
		size = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
	}
	if (size == 0 || size > MANIFEST_SIZE_MAX) {
		snprintf(err, errlen, "%s: not a file or block device of 1 byte to 1 PiB", image);
		close(fd);
		return -EIO;
	}
	if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", output, (int)getpid()) >= (int)sizeof tmp) {
		snprintf(err, errlen, "%s: path too long", output);
		close(fd);
		return -EINVAL;
	}
	out = fopen(tmp, "w");
	if (!out) {
		rc = -errno;
		snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		close(fd);
		return rc;
	}
	rc = manifest_write(fd, size, chunk, out);
	if (fflush(out) != 0 || fsync(fileno(out)) != 0)
		rc = rc ? rc : -errno;
	fclose(out);
	close(fd);
	if (rc == 0 && rename(tmp, output) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		snprintf(err, errlen, "writing %s: %s", output, strerror(-rc));
	}
	return rc;
}

int cmd_manifest(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "chunk-size", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *output = NULL, *image;
	uint64_t chunk = MANIFEST_CHUNK_DEFAULT;
	char err[512];
	int opt, rc;

	log_set_prefix("virtman manifest");
	while ((opt = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'o': output = optarg; break;
		case 'c':
			if (parse_u64(optarg, MANIFEST_CHUNK_MIN, MANIFEST_CHUNK_MAX, &chunk) < 0 ||
			    (chunk & (chunk - 1)))
				die(EXIT_USAGE, "--chunk-size %s: a power of two from %u to %u",
				    optarg, MANIFEST_CHUNK_MIN, MANIFEST_CHUNK_MAX);
			break;
		case 'h': fputs(manifest_usage, stdout); return 0;
		default: fputs(manifest_usage, stderr); return EXIT_USAGE;
		}
	}
	if (optind + 1 != argc || !output) {
		log_msg(optind + 1 != argc ? "exactly one IMAGE expected" : "missing -o FILE");
		fputs(manifest_usage, stderr);
		return EXIT_USAGE;
	}
	image = argv[optind];
	rc = manifest_create(image, output, (uint32_t)chunk, err, sizeof err);
	if (rc < 0)
		die(rc == -EINVAL ? EXIT_USAGE : EXIT_START, "%s", err);
	return 0;
}
