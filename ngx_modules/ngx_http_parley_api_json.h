
/*
 * Request body checking and row rendering shared by the endpoint files.
 */


#ifndef _NGX_HTTP_PARLEY_API_JSON_H_INCLUDED_
#define _NGX_HTTP_PARLEY_API_JSON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <jansson.h>
#include <mysql.h>

#include "ngx_http_parley_api.h"


#define NGX_PARLEY_ID_MAX            128

#define NGX_PARLEY_FIELD_STRING      0   /* min..max bytes (max 0: max_text) */
#define NGX_PARLEY_FIELD_ID          1   /* a tenant-chosen id, 1..max */
#define NGX_PARLEY_FIELD_ENUM        2   /* one of values ("a|b|c") */
#define NGX_PARLEY_FIELD_OBJECT      3   /* JSON object of at most max bytes
                                            (max 0: max_metadata) */
#define NGX_PARLEY_FIELD_INT         4   /* min..max (max 0: no bound) */
#define NGX_PARLEY_FIELD_BOOL        5
#define NGX_PARLEY_FIELD_ID_ARRAY    6   /* min..max ids */


typedef struct {
    const char                *name;
    ngx_uint_t                 type;
    size_t                     min;
    size_t                     max;
    ngx_uint_t                 required;
    ngx_uint_t                 nullable;
    const char                *values;   /* ENUM: "a|b|c" */
} ngx_http_parley_field_t;


/* NGX_OK, or NGX_ERROR after answering 400/422 naming the field. */
ngx_int_t ngx_http_parley_api_check_body(ngx_http_parley_api_req_t *ar,
    const ngx_http_parley_field_t *fields);

ngx_int_t ngx_http_parley_api_enum(const char *values, const char *s);
ngx_int_t ngx_http_parley_api_valid_id(ngx_str_t *id);

/* A string member's value (borrowed from the body), or NULL. */
const char *ngx_http_parley_api_str(json_t *obj, const char *name,
    ngx_str_t *out);

/* A DATETIME(3) column as ISO 8601 UTC text, or null. */
json_t *ngx_http_parley_api_col_time(MYSQL_ROW row, unsigned long *len,
    unsigned i);


#endif /* _NGX_HTTP_PARLEY_API_JSON_H_INCLUDED_ */
