#include <archive.h>
#include <archive_entry.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* libarchive's AE_IF* macros carry casts Swift cannot import; these mirror them. */
static const unsigned int LATHE_AE_IFREG = 0100000;
static const unsigned int LATHE_AE_IFDIR = 0040000;
static const unsigned int LATHE_AE_IFLNK = 0120000;

/* copy_file_range(2) without depending on _GNU_SOURCE being set for Swift's Glibc module. */
static inline long lathe_copy_file_range(int in, int out, size_t length) {
#ifdef SYS_copy_file_range
    return syscall(SYS_copy_file_range, in, (void *)0, out, (void *)0, length, 0);
#else
    errno = 38; /* ENOSYS */
    return -1;
#endif
}
