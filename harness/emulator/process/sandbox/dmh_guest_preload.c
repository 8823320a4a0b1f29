/* dmh_guest_preload.c: the libc memory queries of an emulated guest's programs answer with
 * the guest's figures.
 *
 * glibc answers sysconf(_SC_PHYS_PAGES / _SC_AVPHYS_PAGES), get_phys_pages() and
 * get_avphys_pages() from the sysinfo() system call, not from /proc/meminfo, and calls it
 * internally (so interposing sysinfo() alone would not reach them). This library, loaded
 * with LD_PRELOAD into every program a guest starts, replaces the memory fields of
 * sysinfo() and those sysconf() names with the figures of the guest's meminfo file
 * ($DMH_GUEST_MEMINFO, else /proc/meminfo, which the guest's mount namespace overlays with
 * the same file), read at every call so they agree with /proc/meminfo at every instant.
 * Statically linked programs that make the system call themselves are not covered.
 *
 * Built by harness/emulator/process/sandbox/preload.py with the system C compiler; no libc calls
 * that allocate, so it is safe in any thread and after fork.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <unistd.h>

static char meminfo_path[4096] = "/proc/meminfo";

__attribute__((constructor)) static void dmh_init(void) {
    const char *path = getenv("DMH_GUEST_MEMINFO");
    if (path != NULL && path[0] != '\0' && strlen(path) < sizeof(meminfo_path))
        strcpy(meminfo_path, path);
}

struct guest_mem {
    unsigned long long total, free, buffers, shmem, swap_total, swap_free; /* kB */
};

/* The value of `name` (with its colon) in `text`, in kB; 0 when absent. */
static unsigned long long field(const char *text, const char *name) {
    size_t len = strlen(name);
    const char *line = text;
    while (line != NULL && *line != '\0') {
        if (strncmp(line, name, len) == 0) {
            const char *p = line + len;
            unsigned long long value = 0;
            while (*p == ' ' || *p == '\t') p++;
            while (*p >= '0' && *p <= '9') value = value * 10 + (unsigned long long)(*p++ - '0');
            return value;
        }
        line = strchr(line, '\n');
        if (line != NULL) line++;
    }
    return 0;
}

static int read_guest(struct guest_mem *m) {
    char text[8192];
    ssize_t got, size = 0;
    int fd = open(meminfo_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    while ((got = read(fd, text + size, sizeof(text) - 1 - (size_t)size)) > 0) size += got;
    close(fd);
    text[size] = '\0';
    m->total = field(text, "MemTotal:");
    if (m->total == 0) return -1;
    m->free = field(text, "MemFree:");
    m->buffers = field(text, "Buffers:");
    m->shmem = field(text, "Shmem:");
    m->swap_total = field(text, "SwapTotal:");
    m->swap_free = field(text, "SwapFree:");
    return 0;
}

int sysinfo(struct sysinfo *info) {
    struct guest_mem m;
    unsigned long unit;
    if (syscall(SYS_sysinfo, info) != 0) return -1;
    if (read_guest(&m) != 0) return 0; /* no guest view: the machine's figures */
    unit = sizeof(unsigned long) >= 8 ? 1 : 1024; /* as the kernel: bytes when they fit */
    info->mem_unit = (unsigned int)unit;
    info->totalram = (unsigned long)(m.total * 1024 / unit);
    info->freeram = (unsigned long)(m.free * 1024 / unit);
    info->bufferram = (unsigned long)(m.buffers * 1024 / unit);
    info->sharedram = (unsigned long)(m.shmem * 1024 / unit);
    info->totalswap = (unsigned long)(m.swap_total * 1024 / unit);
    info->freeswap = (unsigned long)(m.swap_free * 1024 / unit);
    info->totalhigh = 0;
    info->freehigh = 0;
    return 0;
}

static long pages(int available) {
    struct guest_mem m;
    long page = getpagesize();
    if (read_guest(&m) != 0) return -1;
    return (long)((available ? m.free : m.total) * 1024 / (unsigned long long)page);
}

static long real_sysconf(int name) {
    static long (*next)(int) = NULL;
    if (next == NULL) next = (long (*)(int))dlsym(RTLD_NEXT, "sysconf");
    return next != NULL ? next(name) : -1;
}

long sysconf(int name) {
    if (name == _SC_PHYS_PAGES || name == _SC_AVPHYS_PAGES) {
        long value = pages(name == _SC_AVPHYS_PAGES);
        if (value >= 0) return value;
    }
    return real_sysconf(name);
}

long __sysconf(int name) { return sysconf(name); }

long get_phys_pages(void) {
    long value = pages(0);
    return value >= 0 ? value : real_sysconf(_SC_PHYS_PAGES);
}

long get_avphys_pages(void) {
    long value = pages(1);
    return value >= 0 ? value : real_sysconf(_SC_AVPHYS_PAGES);
}

long __get_phys_pages(void) { return get_phys_pages(); }

long __get_avphys_pages(void) { return get_avphys_pages(); }
