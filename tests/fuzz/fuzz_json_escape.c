// fuzz-sources: lib/parley_json.c
/*
 * libFuzzer harness for the JSON escaper: whatever the bytes, the output
 * fits the length reserved for it and is valid UTF-8 with no raw control
 * character, quote or lone backslash.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>

#include "parley_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t need = parley_json_escaped_len(data, size), i, seq;
    unsigned char *out = malloc(need + 1), *end;

    assert(out != NULL);
    end = parley_json_escape(out, data, size);
    assert((size_t) (end - out) <= need);

    for (i = 0; out + i < end; i += seq) {
        seq = parley_utf8_sequence(out + i, end - (out + i));
        assert(seq > 0);
        if (out[i] < 0x20) {
            abort();
        }
        if (out[i] == '\\') {
            assert(out + i + 1 < end);
            seq = 2; /* the escaped byte belongs to the escape */
        } else {
            assert(out[i] != '"');
        }
    }

    free(out);
    return 0;
}
