
/*
 * Checking request bodies against a field table: every member of the body
 * must be a known field of the right type and size, every required field
 * present.  The first violation answers 422 naming the field; nothing has
 * been written by then, since handlers check before their first statement.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_api.h"
#include "ngx_http_parley_api_json.h"
#include "parley_json.h"


static ngx_int_t ngx_http_parley_api_check_one(ngx_http_parley_api_req_t *ar,
    const ngx_http_parley_field_t *f, json_t *v);


ngx_int_t
ngx_http_parley_api_check_body(ngx_http_parley_api_req_t *ar,
    const ngx_http_parley_field_t *fields)
{
    json_t                         *v;
    const char                     *key;
    const ngx_http_parley_field_t  *f;

    if (ar->body == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST, "invalid_json",
                                 NULL, "a JSON object body is required");
        return NGX_ERROR;
    }

    json_object_foreach(ar->body, key, v) {
        for (f = fields; f->name; f++) {
            if (ngx_strcmp(f->name, key) == 0) {
                break;
            }
        }

        if (f->name == NULL) {
            ngx_http_parley_api_fail(ar, 422, "unknown_field", key,
                                     "unknown field \"%s\"", key);
            return NGX_ERROR;
        }

        if (ngx_http_parley_api_check_one(ar, f, v) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    for (f = fields; f->name; f++) {
        if (f->required && json_object_get(ar->body, f->name) == NULL) {
            ngx_http_parley_api_fail(ar, 422, "missing_field", f->name,
                                     "field \"%s\" is required", f->name);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_parley_api_check_one(ngx_http_parley_api_req_t *ar,
    const ngx_http_parley_field_t *f, json_t *v)
{
    size_t       len, max;
    json_int_t   n;
    const char  *s;
    ngx_str_t    str;

    if (json_is_null(v) && f->nullable) {
        return NGX_OK;
    }

    switch (f->type) {

    case NGX_PARLEY_FIELD_STRING:
    case NGX_PARLEY_FIELD_ID:
    case NGX_PARLEY_FIELD_ENUM:
        if (!json_is_string(v)) {
            goto type;
        }

        s = json_string_value(v);
        len = json_string_length(v);

        /* jansson accepts "\u0000" inside strings; ids and text may not */
        if (ngx_strlen(s) != len) {
            ngx_http_parley_api_fail(ar, 422, "invalid_value", f->name,
                                     "\"%s\" holds a NUL character", f->name);
            return NGX_ERROR;
        }

        max = f->max ? f->max : ar->conf->max_text;

        if (len < f->min || len > max) {
            ngx_http_parley_api_fail(ar, 422, "invalid_length", f->name,
                                     "\"%s\" must be %uz to %uz bytes long",
                                     f->name, f->min, max);
            return NGX_ERROR;
        }

        if (f->type == NGX_PARLEY_FIELD_ID) {
            str.data = (u_char *) s;
            str.len = len;
            if (ngx_http_parley_api_valid_id(&str) != NGX_OK) {
                ngx_http_parley_api_fail(ar, 422, "invalid_value", f->name,
                                         "\"%s\" may not hold control "
                                         "characters, \"/\" or \"%%\"",
                                         f->name);
                return NGX_ERROR;
            }
        }

        if (f->type == NGX_PARLEY_FIELD_ENUM
            && ngx_http_parley_api_enum(f->values, s) < 0)
        {
            ngx_http_parley_api_fail(ar, 422, "invalid_value", f->name,
                                     "\"%s\" must be one of %s", f->name,
                                     f->values);
            return NGX_ERROR;
        }

        return NGX_OK;

    case NGX_PARLEY_FIELD_OBJECT:
        if (!json_is_object(v)) {
            goto type;
        }

        len = json_dumpb(v, NULL, 0, JSON_COMPACT);
        max = f->max ? f->max : ar->conf->max_metadata;

        if (len > max) {
            ngx_http_parley_api_fail(ar, 422, "too_large", f->name,
                                     "\"%s\" is larger than %uz bytes",
                                     f->name, max);
            return NGX_ERROR;
        }

        return NGX_OK;

    case NGX_PARLEY_FIELD_INT:
        if (!json_is_integer(v)) {
            goto type;
        }

        n = json_integer_value(v);

        if (n < (json_int_t) f->min || (f->max && n > (json_int_t) f->max)) {
            ngx_http_parley_api_fail(ar, 422, "out_of_range", f->name,
                                     "\"%s\" must be %uz to %uz", f->name,
                                     f->min, f->max);
            return NGX_ERROR;
        }

        return NGX_OK;

    case NGX_PARLEY_FIELD_BOOL:
        if (!json_is_boolean(v)) {
            goto type;
        }

        return NGX_OK;

    case NGX_PARLEY_FIELD_ID_ARRAY:
        if (!json_is_array(v)) {
            goto type;
        }

        if (json_array_size(v) < f->min
            || (f->max && json_array_size(v) > f->max))
        {
            ngx_http_parley_api_fail(ar, 422, "invalid_length", f->name,
                                     "\"%s\" must hold %uz to %uz ids",
                                     f->name, f->min, f->max);
            return NGX_ERROR;
        }

        {
            size_t   i;
            json_t  *e;

            json_array_foreach(v, i, e) {
                if (!json_is_string(e)) {
                    goto type;
                }

                str.data = (u_char *) json_string_value(e);
                str.len = json_string_length(e);

                if (ngx_http_parley_api_valid_id(&str) != NGX_OK) {
                    ngx_http_parley_api_fail(ar, 422, "invalid_value",
                                             f->name, "\"%s\" holds an "
                                             "invalid id", f->name);
                    return NGX_ERROR;
                }
            }
        }

        return NGX_OK;
    }

type:

    ngx_http_parley_api_fail(ar, 422, "invalid_type", f->name,
                             "\"%s\" must be %s", f->name,
                             f->type == NGX_PARLEY_FIELD_OBJECT ? "an object"
                             : f->type == NGX_PARLEY_FIELD_INT ? "an integer"
                             : f->type == NGX_PARLEY_FIELD_BOOL ? "a boolean"
                             : f->type == NGX_PARLEY_FIELD_ID_ARRAY
                               ? "an array of ids" : "a string");
    return NGX_ERROR;
}


/* index of s in a "|"-separated list such as "a|b|c", or -1 */

ngx_int_t
ngx_http_parley_api_enum(const char *values, const char *s)
{
    size_t       len;
    ngx_int_t    i;
    const char  *p, *bar;

    len = ngx_strlen(s);

    for (i = 0, p = values; *p; i++) {
        bar = ngx_strchr(p, '|');
        if (bar == NULL) {
            bar = p + ngx_strlen(p);
        }

        if ((size_t) (bar - p) == len && ngx_strncmp(p, s, len) == 0) {
            return i;
        }

        p = *bar ? bar + 1 : bar;
    }

    return -1;
}


/*
 * A tenant-chosen id (users): 1..128 bytes of UTF-8 without control
 * characters, '/' or '%', so that it can appear in a path verbatim.
 */

ngx_int_t
ngx_http_parley_api_valid_id(ngx_str_t *id)
{
    size_t  i, seq;

    if (id->len == 0 || id->len > NGX_PARLEY_ID_MAX) {
        return NGX_ERROR;
    }

    for (i = 0; i < id->len; i += seq) {
        if (id->data[i] < 0x20 || id->data[i] == 0x7f
            || id->data[i] == '/' || id->data[i] == '%')
        {
            return NGX_ERROR;
        }

        seq = parley_utf8_sequence(id->data + i, id->len - i);
        if (seq == 0) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


const char *
ngx_http_parley_api_str(json_t *obj, const char *name, ngx_str_t *out)
{
    json_t  *v;

    v = json_object_get(obj, name);

    if (v == NULL || !json_is_string(v)) {
        out->data = NULL;
        out->len = 0;
        return NULL;
    }

    out->data = (u_char *) json_string_value(v);
    out->len = json_string_length(v);

    return (const char *) out->data;
}


/* "2026-12-04 01:50:00.123" -> "2026-12-04T01:50:00.123Z" */

json_t *
ngx_http_parley_api_col_time(MYSQL_ROW row, unsigned long *len, unsigned i)
{
    char  buf[40];

    if (row[i] == NULL || len[i] < 19 || len[i] > 26) {
        return json_null();
    }

    ngx_memcpy(buf, row[i], len[i]);
    buf[10] = 'T';
    buf[len[i]] = 'Z';
    buf[len[i] + 1] = '\0';

    return json_string(buf);
}
