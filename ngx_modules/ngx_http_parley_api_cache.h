
/*
 * Worker-local TTL cache (see ngx_http_parley_api_cache.c).
 */


#ifndef _NGX_HTTP_PARLEY_API_CACHE_H_INCLUDED_
#define _NGX_HTTP_PARLEY_API_CACHE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef struct ngx_http_parley_cache_s {
    ngx_rbtree_t               rbtree;
    ngx_rbtree_node_t          sentinel;
    ngx_queue_t                queue;
    ngx_uint_t                 count;
    ngx_uint_t                 max;
} ngx_http_parley_cache_t;


void ngx_http_parley_cache_init(ngx_http_parley_cache_t *cache,
    ngx_uint_t max);
void ngx_http_parley_cache_destroy(ngx_http_parley_cache_t *cache);

/* Copies a fresh value of exactly `size` bytes out; NGX_DECLINED if none. */
ngx_int_t ngx_http_parley_cache_get(ngx_http_parley_cache_t *cache,
    u_char *key, size_t len, void *value, size_t size);
void ngx_http_parley_cache_put(ngx_http_parley_cache_t *cache, u_char *key,
    size_t len, void *value, size_t size, ngx_msec_t ttl);
void ngx_http_parley_cache_delete(ngx_http_parley_cache_t *cache,
    u_char *key, size_t len);


#endif /* _NGX_HTTP_PARLEY_API_CACHE_H_INCLUDED_ */
