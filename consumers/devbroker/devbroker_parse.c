/*
 * Strict parsers for CLI arguments and control-socket words.  Input comes
 * from other processes, so nothing is accepted loosely: no leading spaces,
 * no '+', no trailing garbage, no out-of-range values.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "devbroker.h"

int parley_devbroker_parse_long(const char *s, long min, long max, long *out)
{
    const char *p = s;
    char *end;
    long v;

    if (s == NULL || *s == '\0') {
        return -1;
    }
    if (*p == '-') {
        if (min >= 0) {
            return -1;
        }
        p++;
    }
    /* digits only after the optional '-', at most 10 of them */
    if (*p == '\0' || strspn(p, "0123456789") != strlen(p) || strlen(p) > 10) {
        return -1;
    }

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        return -1;
    }
    *out = v;
    return 0;
}

int parley_devbroker_topic_name_valid(const char *name)
{
    static const char legal[] = "abcdefghijklmnopqrstuvwxyz"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "0123456789._-";
    size_t len = strlen(name);

    if (len == 0 || len > PARLEY_DEVBROKER_TOPIC_MAX) {
        return 0;
    }
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        return 0;
    }
    return strspn(name, legal) == len;
}
