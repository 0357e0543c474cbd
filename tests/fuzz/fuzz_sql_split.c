// fuzz-sources: lib/parley_sql_split.c
/*
 * libFuzzer harness for the migration splitter: any bytes must split without
 * reading outside the input, every statement must lie inside it, in order,
 * and the splitter must end (0 or -1) and then keep answering the same.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "parley_sql_split.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parley_sql_split_t sp;
    parley_sql_stmt_t stmt;
    const char *buf = (const char *) data, *prev_end = buf;
    int rc;
    size_t n = 0;

    parley_sql_split_init(&sp, buf, size);

    while ((rc = parley_sql_split_next(&sp, &stmt)) == 1) {
        assert(stmt.len > 0);
        assert(stmt.text >= prev_end && stmt.text + stmt.len <= buf + size);
        prev_end = stmt.text + stmt.len;
        assert(++n <= size);
    }

    assert(rc == 0 || rc == -1);
    assert(parley_sql_split_next(&sp, &stmt) == rc);
    return 0;
}
