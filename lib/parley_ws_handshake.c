#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "parley_ws_handshake.h"

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* ---- lists ------------------------------------------------------------- */

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static void trim(const char **s, size_t *len)
{
    while (*len > 0 && is_ows((*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_ows((*s)[*len - 1])) {
        (*len)--;
    }
}

int parley_ws_list_next(const char *list, size_t len, size_t *pos,
                        const char **item, size_t *item_len)
{
    size_t start, end;

    *item = NULL;
    *item_len = 0;
    if (list == NULL) {
        return 0;
    }

    while (*pos < len) {
        start = *pos;
        end = start;
        while (end < len && list[end] != ',') {
            end++;
        }
        *pos = end < len ? end + 1 : end;

        *item = list + start;
        *item_len = end - start;
        trim(item, item_len);
        if (*item_len > 0) {
            return 1;
        }
    }
    *item = NULL;
    *item_len = 0;
    return 0;
}

int parley_ws_is_token(const char *s, size_t len)
{
    size_t        i;
    unsigned char c;

    if (len == 0) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9'))
        {
            continue;
        }
        if (c == 0 || strchr("!#$%&'*+-.^_`|~", c) == NULL) {
            return 0;
        }
    }
    return 1;
}

static int list_has_ci(const char *list, size_t len, const char *word)
{
    const char *item;
    size_t      item_len, pos = 0, wlen = strlen(word);

    while (parley_ws_list_next(list, len, &pos, &item, &item_len)) {
        if (item_len == wlen && strncasecmp(item, word, wlen) == 0) {
            return 1;
        }
    }
    return 0;
}

/* ---- request checks ---------------------------------------------------- */

static int eq(const char *s, size_t len, const char *lit)
{
    return s != NULL && len == strlen(lit) && memcmp(s, lit, len) == 0;
}

static int is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* The key, trimmed, if it is 22 base64 characters and "=="; else NULL. */
static const char *key_ok(const char *key, size_t key_len, size_t *out_len)
{
    size_t i;

    if (key == NULL) {
        return NULL;
    }
    trim(&key, &key_len);
    if (key_len != PARLEY_WS_KEY_LEN || key[22] != '=' || key[23] != '=') {
        return NULL;
    }
    for (i = 0; i < 22; i++) {
        if (!is_b64(key[i])) {
            return NULL;
        }
    }
    *out_len = key_len;
    return key;
}

parley_ws_hs_rc_t parley_ws_handshake_check(const parley_ws_upgrade_t *req)
{
    const char *v;
    size_t      vlen;

    if (!eq(req->method, req->method_len, "GET")) {
        return PARLEY_WS_HS_BAD_METHOD;
    }
    v = req->http_version;
    vlen = req->http_version_len;
    if (v != NULL) {
        trim(&v, &vlen);
    }
    if (!eq(v, vlen, "HTTP/1.1")) {
        return PARLEY_WS_HS_BAD_HTTP_VERSION;
    }
    if (!list_has_ci(req->upgrade, req->upgrade_len, "websocket")) {
        return PARLEY_WS_HS_NO_UPGRADE;
    }
    if (!list_has_ci(req->connection, req->connection_len, "upgrade")) {
        return PARLEY_WS_HS_NO_CONNECTION;
    }
    v = req->version;
    vlen = req->version_len;
    if (v != NULL) {
        trim(&v, &vlen);
    }
    if (!eq(v, vlen, "13")) {
        return PARLEY_WS_HS_BAD_VERSION;
    }
    if (key_ok(req->key, req->key_len, &vlen) == NULL) {
        return PARLEY_WS_HS_BAD_KEY;
    }
    return PARLEY_WS_HS_OK;
}

unsigned parley_ws_handshake_status(parley_ws_hs_rc_t rc)
{
    switch (rc) {
    case PARLEY_WS_HS_OK:
        return 101;
    case PARLEY_WS_HS_BAD_METHOD:
        return 405;
    case PARLEY_WS_HS_NO_UPGRADE:
    case PARLEY_WS_HS_BAD_VERSION:
        return 426;
    default:
        return 400;
    }
}

const char *parley_ws_handshake_reason(parley_ws_hs_rc_t rc)
{
    switch (rc) {
    case PARLEY_WS_HS_OK:
        return "ok";
    case PARLEY_WS_HS_BAD_METHOD:
        return "a WebSocket handshake must be a GET";
    case PARLEY_WS_HS_BAD_HTTP_VERSION:
        return "a WebSocket handshake needs HTTP/1.1";
    case PARLEY_WS_HS_NO_UPGRADE:
        return "Upgrade: websocket is required";
    case PARLEY_WS_HS_NO_CONNECTION:
        return "Connection: Upgrade is required";
    case PARLEY_WS_HS_BAD_VERSION:
        return "only Sec-WebSocket-Version 13 is supported";
    case PARLEY_WS_HS_BAD_KEY:
        return "Sec-WebSocket-Key must be base64 of 16 bytes";
    }
    return "bad WebSocket handshake";
}

/* ---- Sec-WebSocket-Accept ---------------------------------------------- */

int parley_ws_accept(const char *key, size_t key_len,
                     char out[PARLEY_WS_ACCEPT_LEN])
{
    char          buf[PARLEY_WS_KEY_LEN + sizeof(ws_guid) - 1];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int  md_len = 0;
    size_t        klen, i, o = 0;
    uint32_t      v;

    key = key_ok(key, key_len, &klen);
    if (key == NULL) {
        return -1;
    }
    memcpy(buf, key, klen);
    memcpy(buf + klen, ws_guid, sizeof(ws_guid) - 1);

    if (EVP_Digest(buf, sizeof(buf), md, &md_len, EVP_sha1(), NULL) != 1
        || md_len != 20)
    {
        return -1;
    }

    /* 20 bytes: six groups of three, then two bytes and one '=' */
    for (i = 0; i + 3 <= 18; i += 3) {
        v = ((uint32_t) md[i] << 16) | ((uint32_t) md[i + 1] << 8) | md[i + 2];
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
        out[o++] = b64[v & 63];
    }
    v = ((uint32_t) md[18] << 16) | ((uint32_t) md[19] << 8);
    out[o++] = b64[(v >> 18) & 63];
    out[o++] = b64[(v >> 12) & 63];
    out[o++] = b64[(v >> 6) & 63];
    out[o++] = '=';
    return 0;
}

/* ---- Sec-WebSocket-Protocol -------------------------------------------- */

int parley_ws_protocol_valid(const char *list, size_t len)
{
    const char *item;
    size_t      item_len, pos = 0, n = 0, i;

    if (list == NULL) {
        return 0;
    }
    /* every byte must sit in a token, a comma or white space */
    for (i = 0; i < len; i++) {
        if (list[i] != ',' && !is_ows(list[i])
            && !parley_ws_is_token(list + i, 1))
        {
            return 0;
        }
    }
    while (parley_ws_list_next(list, len, &pos, &item, &item_len)) {
        if (!parley_ws_is_token(item, item_len)) {
            return 0; /* "a b": white space inside an item */
        }
        n++;
    }
    return n > 0;
}

int parley_ws_protocol_has(const char *list, size_t len, const char *name,
                           size_t name_len)
{
    const char *item;
    size_t      item_len, pos = 0;

    while (parley_ws_list_next(list, len, &pos, &item, &item_len)) {
        if (item_len == name_len && memcmp(item, name, name_len) == 0) {
            return 1;
        }
    }
    return 0;
}

size_t parley_ws_protocol_find_prefix(const char *list, size_t len,
                                      const char *prefix, size_t prefix_len,
                                      const char **item, size_t *item_len)
{
    const char *it;
    size_t      it_len, pos = 0, n = 0;

    *item = NULL;
    *item_len = 0;
    if (prefix == NULL || prefix_len == 0) {
        return 0;
    }
    while (parley_ws_list_next(list, len, &pos, &it, &it_len)) {
        if (it_len > prefix_len && memcmp(it, prefix, prefix_len) == 0) {
            if (n == 0) {
                *item = it;
                *item_len = it_len;
            }
            n++;
        }
    }
    return n;
}
