/* Files: opening a client-named path confined to a directory, replacing a file atomically. */
#ifndef VIRTMAN_FS_H
#define VIRTMAN_FS_H

#include <stddef.h>
#include <sys/types.h>

/* Checks a client-supplied relative path: not empty, no ".." component, no NUL; leading
 * slashes are allowed (the path is taken relative to the root). 0 or -EACCES/-ENOENT. */
int fs_path_check(const char *path);

/* Opens path read-only beneath the directory rootfd: ".." components are refused, symlinks
 * may not leave the root (openat2 RESOLVE_BENEATH; where the kernel lacks it, no symlink is
 * followed at all), and only regular files open. fd, or -EACCES/-ENOENT/-EISDIR/... */
int fs_open_beneath(int rootfd, const char *path);

/* Writes len bytes to path through a temporary file, fsync and rename; 0 or negative errno. */
int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* Creates dir and its missing parents; 0 or negative errno. */
int fs_mkdir_p(const char *dir, mode_t mode);

#endif
