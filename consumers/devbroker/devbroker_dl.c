/*
 * dlsym(RTLD_NEXT) lives in its own unit: RTLD_NEXT needs _GNU_SOURCE, and
 * devbroker_ports.c must not see _GNU_SOURCE (see the comment there).
 */
#define _GNU_SOURCE

#include <dlfcn.h>

#include "devbroker.h"

/* The definition of `symbol` that the next object after the executable in
 * lookup order provides (libc's bind, or a sanitizer's wrapper of it). */
void *parley_devbroker_dl_next(const char *symbol)
{
    return dlsym(RTLD_NEXT, symbol);
}
