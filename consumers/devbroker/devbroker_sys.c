/*
 * The glibc/Linux specifics that need _GNU_SOURCE, kept apart because
 * devbroker_interpose.c must not see _GNU_SOURCE (see the comment there).
 */
#define _GNU_SOURCE

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#include "devbroker.h"

void *parley_devbroker_sys_next_symbol(const char *symbol)
{
    return dlsym(RTLD_NEXT, symbol);
}

int parley_devbroker_sys_thread_named(const char *name)
{
    char buf[16]; /* the kernel's limit, NUL included */

    if (pthread_getname_np(pthread_self(), buf, sizeof(buf)) != 0) {
        return 0;
    }
    return strcmp(buf, name) == 0;
}
