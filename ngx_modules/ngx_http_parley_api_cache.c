
/*
 * A worker-local cache of small values with a time to live and a bound on
 * its size, for lookups every request makes (API key -> tenant, tenant
 * settings).  Entries are heap memory owned by the cache (they outlive
 * requests); the oldest entry goes first when the cache is full.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_parley_api_cache.h"


typedef struct {
    ngx_rbtree_node_t          node;       /* key: murmur2 of the key */
    ngx_queue_t                queue;      /* age order, newest at head */
    ngx_msec_t                 expires;
    size_t                     key_len;
    size_t                     value_len;
    u_char                     data[1];    /* key, then value */
} ngx_http_parley_cache_entry_t;


static void ngx_http_parley_cache_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_parley_cache_entry_t *ngx_http_parley_cache_find(
    ngx_http_parley_cache_t *cache, u_char *key, size_t len, uint32_t hash);
static void ngx_http_parley_cache_remove(ngx_http_parley_cache_t *cache,
    ngx_http_parley_cache_entry_t *e);


void
ngx_http_parley_cache_init(ngx_http_parley_cache_t *cache, ngx_uint_t max)
{
    ngx_rbtree_init(&cache->rbtree, &cache->sentinel,
                    ngx_http_parley_cache_insert_value);
    ngx_queue_init(&cache->queue);
    cache->count = 0;
    cache->max = max;
}


void
ngx_http_parley_cache_destroy(ngx_http_parley_cache_t *cache)
{
    ngx_queue_t                    *q;
    ngx_http_parley_cache_entry_t  *e;

    while (!ngx_queue_empty(&cache->queue)) {
        q = ngx_queue_last(&cache->queue);
        e = ngx_queue_data(q, ngx_http_parley_cache_entry_t, queue);
        ngx_http_parley_cache_remove(cache, e);
    }
}


ngx_int_t
ngx_http_parley_cache_get(ngx_http_parley_cache_t *cache, u_char *key,
    size_t len, void *value, size_t size)
{
    ngx_http_parley_cache_entry_t  *e;

    e = ngx_http_parley_cache_find(cache, key, len, ngx_murmur_hash2(key, len));
    if (e == NULL) {
        return NGX_DECLINED;
    }

    if ((ngx_msec_int_t) (e->expires - ngx_current_msec) <= 0
        || e->value_len != size)
    {
        ngx_http_parley_cache_remove(cache, e);
        return NGX_DECLINED;
    }

    ngx_memcpy(value, e->data + e->key_len, size);

    return NGX_OK;
}


void
ngx_http_parley_cache_put(ngx_http_parley_cache_t *cache, u_char *key,
    size_t len, void *value, size_t size, ngx_msec_t ttl)
{
    uint32_t                        hash;
    ngx_queue_t                    *q;
    ngx_http_parley_cache_entry_t  *e;

    hash = ngx_murmur_hash2(key, len);

    e = ngx_http_parley_cache_find(cache, key, len, hash);
    if (e) {
        ngx_http_parley_cache_remove(cache, e);
    }

    if (cache->count >= cache->max) {
        q = ngx_queue_last(&cache->queue);
        e = ngx_queue_data(q, ngx_http_parley_cache_entry_t, queue);
        ngx_http_parley_cache_remove(cache, e);
    }

    e = ngx_alloc(offsetof(ngx_http_parley_cache_entry_t, data) + len + size,
                  ngx_cycle->log);
    if (e == NULL) {
        return;   /* a cache that cannot grow only costs a lookup */
    }

    e->node.key = hash;
    e->expires = ngx_current_msec + ttl;
    e->key_len = len;
    e->value_len = size;
    ngx_memcpy(e->data, key, len);
    ngx_memcpy(e->data + len, value, size);

    ngx_rbtree_insert(&cache->rbtree, &e->node);
    ngx_queue_insert_head(&cache->queue, &e->queue);
    cache->count++;
}


void
ngx_http_parley_cache_delete(ngx_http_parley_cache_t *cache, u_char *key,
    size_t len)
{
    ngx_http_parley_cache_entry_t  *e;

    e = ngx_http_parley_cache_find(cache, key, len, ngx_murmur_hash2(key, len));
    if (e) {
        ngx_http_parley_cache_remove(cache, e);
    }
}


static ngx_http_parley_cache_entry_t *
ngx_http_parley_cache_find(ngx_http_parley_cache_t *cache, u_char *key,
    size_t len, uint32_t hash)
{
    ngx_int_t                       rc;
    ngx_rbtree_node_t              *node, *sentinel;
    ngx_http_parley_cache_entry_t  *e;

    node = cache->rbtree.root;
    sentinel = cache->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        e = (ngx_http_parley_cache_entry_t *) node;
        rc = ngx_memn2cmp(key, e->data, len, e->key_len);

        if (rc == 0) {
            return e;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_http_parley_cache_remove(ngx_http_parley_cache_t *cache,
    ngx_http_parley_cache_entry_t *e)
{
    ngx_rbtree_delete(&cache->rbtree, &e->node);
    ngx_queue_remove(&e->queue);
    cache->count--;
    ngx_free(e);
}


static void
ngx_http_parley_cache_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t              **p;
    ngx_http_parley_cache_entry_t   *e, *t;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            e = (ngx_http_parley_cache_entry_t *) node;
            t = (ngx_http_parley_cache_entry_t *) temp;

            p = (ngx_memn2cmp(e->data, t->data, e->key_len, t->key_len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}
