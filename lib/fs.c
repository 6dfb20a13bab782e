/* Files: opening a client-named path confined to a directory, replacing a file atomically. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lib/fs.h"

/* openat2(2) by hand: musl has no wrapper, and <linux/openat2.h> is not on musl's path. */
#ifndef SYS_openat2
#define SYS_openat2 437		/* the same number on every architecture */
#endif
#define FS_RESOLVE_NO_MAGICLINKS 0x02
#define FS_RESOLVE_BENEATH 0x08

struct fs_open_how {
	uint64_t flags;
	uint64_t mode;
	uint64_t resolve;
};

#define FS_OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)

int fs_path_check(const char *path)
{
	const char *p = path;

	if (strlen(path) >= PATH_MAX)
		return -ENAMETOOLONG;
	while (*p == '/')
		p++;
	if (!*p)
		return -ENOENT;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);

		if (len == 2 && p[0] == '.' && p[1] == '.')
			return -EACCES;
		p += len;
		while (*p == '/')
			p++;
	}
	return 0;
}

/* Without openat2: walk the components with O_NOFOLLOW, so no symlink is followed. */
static int fs_open_walk(int rootfd, const char *rel)
{
	char comp[NAME_MAX + 1];
	int dirfd = rootfd, fd = -1;

	while (*rel) {
		const char *slash = strchr(rel, '/');
		size_t len = slash ? (size_t)(slash - rel) : strlen(rel);
		int last;

		if (len > NAME_MAX) {
			fd = -ENAMETOOLONG;
			break;
		}
		memcpy(comp, rel, len);
		comp[len] = '\0';
		rel += len;
		while (*rel == '/')
			rel++;
		last = *rel == '\0';
		if (len == 1 && comp[0] == '.' && !last)
			continue;
		fd = openat(dirfd, comp, last ? FS_OPEN_FLAGS | O_NOFOLLOW :
				   O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			fd = errno == ELOOP ? -EACCES : -errno;
		if (dirfd != rootfd)
			close(dirfd);
		if (fd < 0 || last)
			return fd;
		dirfd = fd;
	}
	if (dirfd != rootfd)
		close(dirfd);
	return fd < 0 ? fd : -ENOENT;
}

int fs_open_beneath(int rootfd, const char *path)
{
	struct fs_open_how how = {
		.flags = FS_OPEN_FLAGS,
		.resolve = FS_RESOLVE_BENEATH | FS_RESOLVE_NO_MAGICLINKS,
	};
	struct stat st;
	int fd, err;

	if ((err = fs_path_check(path)) < 0)
		return err;
	while (*path == '/')
		path++;
	fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof how);
	if (fd < 0 && (errno == ENOSYS || errno == EPERM))
		fd = fs_open_walk(rootfd, path);
	else if (fd < 0)
		fd = errno == EXDEV || errno == ELOOP ? -EACCES : -errno;
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0)
		st.st_mode = 0;
	if (!S_ISREG(st.st_mode)) {
		err = S_ISDIR(st.st_mode) ? -EISDIR : -EACCES;
		close(fd);
		return err;
	}
	return fd;
}

int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	char tmp[PATH_MAX];
	const char *p = data;
	int fd, err = 0;

	if (snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof tmp)
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : -EIO;
			break;
		}
		p += n;
		len -= (size_t)n;
	}
	if (!err && fsync(fd) < 0)
		err = -errno;
	if (close(fd) < 0 && !err)
		err = -errno;
	if (!err && rename(tmp, path) < 0)
		err = -errno;
	if (err)
		unlink(tmp);
	return err;
}

int fs_mkdir_p(const char *dir, mode_t mode)
{
	char buf[PATH_MAX];
	size_t len = strlen(dir);

	if (len == 0 || len >= sizeof buf)
		return -EINVAL;
	memcpy(buf, dir, len + 1);
	for (char *p = buf + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char saved = *p;

			*p = '\0';
			if (mkdir(buf, mode) < 0 && errno != EEXIST)
				return -errno;
			*p = saved;
			if (!saved)
				break;
		}
	}
	return 0;
}
