
/*
 * Sync: everything that changed for the caller since a token.
 *
 *   GET /v1/sync                       a token for "now", no events (user)
 *   GET /v1/sync?since=TOKEN&limit=N   the next page after TOKEN    (user)
 *
 * Each conversation's log (conversation_events) is gap-free by event_seq.
 * A sync state is the caller's position in each of their conversations
 * (lib/parley_sync_state.h); states are stored server-side, one immutable
 * row of sync_cursors each, and a token names one row.  A page is computed
 * from the state and the logs alone, so asking twice with the same token
 * gives the same page (plus whatever happened since, when the first answer
 * was not a full page): retries are safe, and an answer that was lost is
 * simply asked for again.
 *
 * One step: load the state, then the caller's memberships (active ones,
 * and former ones whose removal is recent enough to matter), work out per
 * conversation which events are due -- after the position, from the
 * joined event of a membership the state did not know, up to the removal
 * event of a former member -- and fetch at most limit of them in time
 * order.  Per conversation the page is in strict event_seq order without a
 * hole (lib's select holds a conversation back rather than skip); across
 * conversations it follows the events' times.  The new state is stored as
 * a new row, unless it equals the old one (then the old token is the
 * answer, and polling writes nothing).
 *
 * States older than the token lifetime are refused (410 token_expired:
 * resynchronise from the REST API) and their rows deleted, a few at a time,
 * by later syncs of the same user.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_api.h"
#include "ngx_http_parley_api_access.h"
#include "ngx_http_parley_api_json.h"
#include "parley_id.h"
#include "parley_sync_state.h"


/* nginx names no constant for it */
#define NGX_PARLEY_HTTP_GONE         410

/* how long a token lives (its row id tells its age) */
#define NGX_PARLEY_SYNC_TTL_DAYS     30
#define NGX_PARLEY_SYNC_TTL_MS                                               \
    ((uint64_t) NGX_PARLEY_SYNC_TTL_DAYS * 86400 * 1000)

/*
 * How long a former membership stays in states: longer than a token
 * lives, so that a removal that happened after a live token was made is
 * always seen (docs/api/sync.md has the argument).
 */
#define NGX_PARLEY_SYNC_KEEP_DAYS    (NGX_PARLEY_SYNC_TTL_DAYS + 1)

/* most conversations one page's fetch looks at; more wait for later pages */
#define NGX_PARLEY_SYNC_FETCH_MAX    256

/* expired rows one sync deletes at most, and how often it tries (1/N) */
#define NGX_PARLEY_SYNC_PURGE_ROWS   32
#define NGX_PARLEY_SYNC_PURGE_ODDS   8


typedef struct {
    ngx_uint_t                   limit;
    ngx_str_t                    token;      /* since, as given */
    uint64_t                     since;      /* its row id; 0: initial */
    uint64_t                     id;         /* the new row's id */

    /* the old state */
    u_char                      *old;
    size_t                       old_len;
    parley_sync_pos_t           *known;
    size_t                       nknown;

    /* the caller's memberships, by conversation id, and what is due */
    parley_sync_member_t        *members;
    parley_sync_range_t         *ranges;
    size_t                       n;
    size_t                       nfetch;     /* ranges[0..nfetch) fetched */
    ngx_uint_t                   skip_gaps;  /* the fallback fetch */

    /* the new state */
    u_char                      *state;
    size_t                       state_len;

    json_t                      *events;     /* the page */
    ngx_uint_t                   has_more;
} ngx_http_parley_sync_ctx_t;


static void ngx_http_parley_sync(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_sync_cleanup(void *data);
static void ngx_http_parley_sync_loaded(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_sync_memberships(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_sync_members(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_sync_fetch(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_sync_fetched(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_sync_finish(ngx_http_parley_api_req_t *ar);
static void ngx_http_parley_sync_saved(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_sync_purged(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res);
static void ngx_http_parley_sync_reply(ngx_http_parley_api_req_t *ar,
    uint64_t id);
static uint64_t ngx_http_parley_sync_now_ms(void);


ngx_http_parley_api_route_t  ngx_http_parley_api_sync_routes[] = {

    { NGX_HTTP_GET, "/v1/sync", NGX_PARLEY_AUTH_USER,
      ngx_http_parley_sync, "sync", 0 },

    { 0, NULL, 0, NULL, NULL, 0 }
};


static void
ngx_http_parley_sync(ngx_http_parley_api_req_t *ar)
{
    uint64_t                     created;
    ngx_pool_cleanup_t          *cln;
    ngx_http_parley_sync_ctx_t  *ctx;

    ctx = ngx_pcalloc(ar->pool, sizeof(ngx_http_parley_sync_ctx_t));
    cln = ngx_pool_cleanup_add(ar->pool, 0);

    if (ctx == NULL || cln == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    cln->handler = ngx_http_parley_sync_cleanup;
    cln->data = ctx;
    ar->data = ctx;

    if (ngx_http_parley_api_limit(ar, &ctx->limit) != NGX_OK) {
        return;
    }

    if (ngx_http_parley_api_arg(ar, "since", &ctx->token) != NGX_OK) {
        /* the first call: a token for now */
        ngx_http_parley_sync_memberships(ar);
        return;
    }

    if (parley_sync_token_decode((const char *) ctx->token.data,
                                 ctx->token.len, &ctx->since)
        != PARLEY_SYNC_OK)
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST, "invalid_token",
                                 "since", "\"since\" is not a sync token");
        return;
    }

    created = parley_id_unix_ms(ctx->since);

    if (created + NGX_PARLEY_SYNC_TTL_MS < ngx_http_parley_sync_now_ms()) {
        ngx_http_parley_api_fail(ar, NGX_PARLEY_HTTP_GONE, "token_expired",
                                 "since",
                                 "the sync token is older than %d days: "
                                 "load the conversations again and start "
                                 "over with a new token",
                                 NGX_PARLEY_SYNC_TTL_DAYS);
        return;
    }

    /* another user's or tenant's token names no row of this caller */
    ngx_http_parley_api_sql(ar, ngx_http_parley_sync_loaded,
        "SELECT state FROM sync_cursors "
        "WHERE tenant_id = %U AND user_id = %L AND id = %U",
        ar->tenant_id, &ar->user_id, ctx->since);
}


static void
ngx_http_parley_sync_cleanup(void *data)
{
    ngx_http_parley_sync_ctx_t *ctx = data;

    if (ctx->events) {
        json_decref(ctx->events);
        ctx->events = NULL;
    }
}


static void
ngx_http_parley_sync_loaded(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    size_t                       n;
    MYSQL_ROW                    row;
    unsigned long               *len;
    ngx_http_parley_sync_ctx_t  *ctx = ar->data;

    row = res->res ? mysql_fetch_row(res->res) : NULL;

    if (row == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_BAD_REQUEST, "invalid_token",
                                 "since", "no such sync token");
        return;
    }

    len = mysql_fetch_lengths(res->res);

    ctx->old = ngx_pnalloc(ar->pool, len[0] ? len[0] : 1);
    if (ctx->old == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ngx_memcpy(ctx->old, row[0], len[0]);
    ctx->old_len = len[0];

    if (parley_sync_state_count(ctx->old, ctx->old_len, &n) != PARLEY_SYNC_OK
        || (ctx->known = ngx_palloc(ar->pool,
                                    (n ? n : 1) * sizeof(parley_sync_pos_t)))
           == NULL
        || parley_sync_state_decode(ctx->old, ctx->old_len, ctx->known, n,
                                    &ctx->nknown)
           != PARLEY_SYNC_OK)
    {
        /* not ours to repair: the client starts over */
        ngx_log_error(NGX_LOG_ERR, ar->log, 0,
                      "parley sync: state %uL of \"%V\" does not decode",
                      ctx->since, &ar->user_id);
        ngx_http_parley_api_fail(ar, NGX_PARLEY_HTTP_GONE, "token_expired",
                                 "since",
                                 "the sync token can no longer be used: "
                                 "load the conversations again and start "
                                 "over with a new token");
        return;
    }

    ngx_http_parley_sync_memberships(ar);
}


/*
 * Active memberships, and former ones whose removal event is younger than
 * NGX_PARLEY_SYNC_KEEP_DAYS; in conversation id order, as states are.
 */

static void
ngx_http_parley_sync_memberships(ngx_http_parley_api_req_t *ar)
{
    ngx_http_parley_api_sql(ar, ngx_http_parley_sync_members,
        "SELECT m.conversation_id, m.state, m.joined_event, m.left_event, "
        "c.event_seq FROM members m JOIN conversations c "
        "ON c.tenant_id = m.tenant_id AND c.id = m.conversation_id "
        "LEFT JOIN conversation_events le ON le.tenant_id = m.tenant_id "
        "AND le.conversation_id = m.conversation_id "
        "AND le.event_seq = m.left_event "
        "WHERE m.tenant_id = %U AND m.user_id = %L "
        "AND (m.state = 'active' "
        "OR le.created_at >= UTC_TIMESTAMP(3) - INTERVAL %U DAY) "
        "ORDER BY m.conversation_id LIMIT %U",
        ar->tenant_id, &ar->user_id, (uint64_t) NGX_PARLEY_SYNC_KEEP_DAYS,
        (uint64_t) PARLEY_SYNC_STATE_MAX + 1);
}


static void
ngx_http_parley_sync_members(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    size_t                       i, n, pending;
    MYSQL_ROW                    row;
    parley_sync_pos_t           *pos;
    parley_sync_member_t        *m;
    ngx_http_parley_sync_ctx_t  *ctx = ar->data;

    n = res->res ? (size_t) mysql_num_rows(res->res) : 0;

    if (n > PARLEY_SYNC_STATE_MAX) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_CONFLICT,
                                 "too_many_conversations", NULL,
                                 "sync follows at most %d conversations; "
                                 "use the REST API", PARLEY_SYNC_STATE_MAX);
        return;
    }

    ctx->members = ngx_palloc(ar->pool,
                              (n ? n : 1) * sizeof(parley_sync_member_t));
    ctx->ranges = ngx_palloc(ar->pool,
                             (n ? n : 1) * sizeof(parley_sync_range_t));

    if (ctx->members == NULL || ctx->ranges == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    for (i = 0; i < n && (row = mysql_fetch_row(res->res)); i++) {
        m = &ctx->members[i];
        m->conversation_id = ngx_http_parley_api_col_u64(row, 0);
        m->active = (row[1] && ngx_strcmp(row[1], "active") == 0);
        m->joined_event = ngx_http_parley_api_col_u64(row, 2);
        m->left_event = ngx_http_parley_api_col_u64(row, 3);
        m->event_seq = ngx_http_parley_api_col_u64(row, 4);
    }

    ctx->n = i;

    if (ctx->since == 0) {
        /* a fresh state: every conversation at its last readable event */
        pos = ngx_palloc(ar->pool, (ctx->n ? ctx->n : 1) * sizeof(*pos));
        if (pos == NULL) {
            ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal", NULL, "out of memory");
            return;
        }

        for (i = 0; i < ctx->n; i++) {
            pos[i].conversation_id = ctx->members[i].conversation_id;
            pos[i].event_seq = parley_sync_now(&ctx->members[i]);
        }

        ctx->state = ngx_pnalloc(ar->pool,
                                 parley_sync_state_encoded_max(ctx->n));

        if (ctx->state == NULL
            || parley_sync_state_encode(pos, ctx->n, ctx->state,
                                        parley_sync_state_encoded_max(ctx->n),
                                        &ctx->state_len)
               != PARLEY_SYNC_OK)
        {
            ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal", NULL, "the sync state "
                                     "could not be encoded");
            return;
        }

        ctx->events = json_array();
        ngx_http_parley_sync_finish(ar);
        return;
    }

    pending = 0;
    ctx->nfetch = 0;

    for (i = 0; i < ctx->n; i++) {
        parley_sync_range(&ctx->members[i],
                          parley_sync_state_find(ctx->known, ctx->nknown,
                                             ctx->members[i].conversation_id),
                          ctx->limit, &ctx->ranges[i]);

        if (parley_sync_pending(&ctx->ranges[i])
            && pending < NGX_PARLEY_SYNC_FETCH_MAX)
        {
            pending++;
            ctx->nfetch = i + 1;
        }
    }

    if (pending == 0) {
        ctx->events = json_array();
        ngx_http_parley_sync_finish(ar);
        return;
    }

    ngx_http_parley_sync_fetch(ar);
}


/*
 * The due events of ranges[0..nfetch), each conversation's window at most
 * a page long, the first limit of them by time (or, in the fallback, by
 * conversation and event_seq).  The condition is a disjunction of one
 * range per conversation, built here from numbers only.
 */

static void
ngx_http_parley_sync_fetch(ngx_http_parley_api_req_t *ar)
{
    u_char                      *cond, *p;
    size_t                       i, size;
    parley_sync_range_t         *r;
    ngx_http_parley_sync_ctx_t  *ctx = ar->data;

    size = ctx->nfetch
           * (sizeof("(e.conversation_id =  AND e.event_seq BETWEEN  AND ) "
                     "OR ") - 1 + 3 * NGX_INT64_LEN) + 1;

    cond = ngx_pnalloc(ar->pool, size);
    if (cond == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    p = cond;

    for (i = 0; i < ctx->nfetch; i++) {
        r = &ctx->ranges[i];

        if (!parley_sync_pending(r)) {
            continue;
        }

        p = ngx_sprintf(p, "%s(e.conversation_id = %uL AND e.event_seq "
                        "BETWEEN %uL AND %uL)", p == cond ? "" : " OR ",
                        r->conversation_id, r->from, r->end);
    }

    *p = '\0';

    /*
     * A message deleted since is shown as its tombstone: the join tells
     * which message events must lose their content.
     */
    ngx_http_parley_api_sql(ar, ngx_http_parley_sync_fetched,
        "SELECT " NGX_PARLEY_EVENT_COLUMNS " FROM " NGX_PARLEY_EVENT_FROM
        " WHERE e.tenant_id = %U AND (%S) "
        "ORDER BY %S LIMIT %U",
        ar->tenant_id, (char *) cond,
        ctx->skip_gaps ? "e.conversation_id, e.event_seq"
                       : "e.created_at, e.conversation_id, e.event_seq",
        (uint64_t) ctx->limit);
}


static void
ngx_http_parley_sync_fetched(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    size_t                       i, nrows, taken;
    uint64_t                     moved;
    json_t                     **items;
    MYSQL_ROW                    row;
    unsigned long               *len;
    unsigned char               *emit;
    parley_sync_key_t           *keys;
    ngx_http_parley_sync_ctx_t  *ctx = ar->data;

    nrows = res->res ? (size_t) mysql_num_rows(res->res) : 0;
    nrows = ngx_min(nrows, ctx->limit);

    keys = ngx_palloc(ar->pool, (nrows + 1) * sizeof(parley_sync_key_t));
    items = ngx_pcalloc(ar->pool, (nrows + 1) * sizeof(json_t *));
    emit = ngx_palloc(ar->pool, nrows + 1);

    if (keys == NULL || items == NULL || emit == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    for (i = 0; i < nrows && (row = mysql_fetch_row(res->res)); i++) {
        len = mysql_fetch_lengths(res->res);
        keys[i].conversation_id = ngx_http_parley_api_col_u64(row, 0);
        keys[i].event_seq = ngx_http_parley_api_col_u64(row, 1);
        items[i] = ngx_http_parley_api_event_json(row, len);
    }

    nrows = i;

    moved = 0;
    for (i = 0; i < ctx->nfetch; i++) {
        moved -= ctx->ranges[i].from;
    }

    taken = parley_sync_select(ctx->ranges, ctx->nfetch, keys, nrows,
                               ctx->limit,
                               ctx->skip_gaps ? PARLEY_SYNC_SKIP_GAPS
                                              : PARLEY_SYNC_STRICT,
                               emit);

    if (taken == 0 && !ctx->skip_gaps) {
        /*
         * Every conversation's next event came out of turn (the times of
         * its events disagree with their order): take the next ones in
         * event order instead, which always makes progress.
         */
        for (i = 0; i < nrows; i++) {
            json_decref(items[i]);
        }

        ngx_log_error(NGX_LOG_INFO, ar->log, 0,
                      "parley sync: events out of time order, paging "
                      "by event number");

        ctx->skip_gaps = 1;
        ngx_http_parley_sync_fetch(ar);
        return;
    }

    ctx->events = json_array();

    for (i = 0; i < nrows; i++) {
        if (emit[i] && items[i]) {
            json_array_append_new(ctx->events, items[i]);

        } else if (items[i]) {
            json_decref(items[i]);
        }
    }

    for (i = 0; i < ctx->nfetch; i++) {
        moved += ctx->ranges[i].from;
    }

    if (moved != taken) {
        /* only the fallback steps over holes; the log should have none */
        ngx_log_error(NGX_LOG_ERR, ar->log, 0,
                      "parley sync: %uL events of \"%V\"'s conversations "
                      "are missing from their logs and were skipped",
                      moved - taken, &ar->user_id);
    }

    if (json_array_size(ctx->events) != taken) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ngx_http_parley_sync_finish(ar);
}


/* A log entry as sync and the gateway show it (columns: _api_access.h). */

json_t *
ngx_http_parley_api_event_json(MYSQL_ROW row, unsigned long *len)
{
    json_t  *payload;

    payload = ngx_http_parley_api_col_json(row, len, 6);

    if (!json_is_object(payload)) {
        json_decref(payload);
        payload = json_object();
    }

    /* the message was deleted since: its earlier events lose the content */
    if (row[8] && row[2]
        && (ngx_strcmp(row[2], "message.new") == 0
            || ngx_strcmp(row[2], "message.edited") == 0))
    {
        if (json_object_get(payload, "text")) {
            json_object_set_new(payload, "text", json_null());
        }

        if (json_object_get(payload, "metadata")) {
            json_object_set_new(payload, "metadata", json_null());
        }

        if (json_object_get(payload, "attachment")) {
            json_object_set_new(payload, "attachment", json_null());
        }

        if (json_object_get(payload, "mentions")) {
            json_object_set_new(payload, "mentions", json_null());
        }

        json_object_set_new(payload, "deleted_at",
                            ngx_http_parley_api_col_time(row, len, 8));
    }

    return json_pack("{s:o,s:I,s:o,s:o,s:o,s:o,s:o,s:o}",
                     "conversation_id",
                     ngx_http_parley_api_id_json(
                         ngx_http_parley_api_col_u64(row, 0)),
                     "event_seq",
                     (json_int_t) ngx_http_parley_api_col_u64(row, 1),
                     "type", ngx_http_parley_api_col_string(row, len, 2),
                     "actor_id", ngx_http_parley_api_col_string(row, len, 3),
                     "subject_id", ngx_http_parley_api_col_string(row, len, 4),
                     "message_seq",
                     row[5] ? json_integer((json_int_t)
                                  ngx_http_parley_api_col_u64(row, 5))
                            : json_null(),
                     "payload", payload,
                     "created_at", ngx_http_parley_api_col_time(row, len, 7));
}


/* The new state: every membership at the last event it has been given. */

static void
ngx_http_parley_sync_finish(ngx_http_parley_api_req_t *ar)
{
    size_t                       i, cap;
    ngx_str_t                    state;
    parley_sync_pos_t           *pos;
    ngx_http_parley_sync_ctx_t  *ctx = ar->data;

    if (ctx->since) {
        pos = ngx_palloc(ar->pool, (ctx->n ? ctx->n : 1) * sizeof(*pos));
        cap = parley_sync_state_encoded_max(ctx->n);
        ctx->state = ngx_pnalloc(ar->pool, cap);

        if (pos == NULL || ctx->state == NULL) {
            ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal", NULL, "out of memory");
            return;
        }

        ctx->has_more = 0;

        for (i = 0; i < ctx->n; i++) {
            pos[i].conversation_id = ctx->ranges[i].conversation_id;
            pos[i].event_seq = ctx->ranges[i].from - 1;

            if (parley_sync_pending(&ctx->ranges[i])) {
                ctx->has_more = 1;
            }
        }

        if (parley_sync_state_encode(pos, ctx->n, ctx->state, cap,
                                     &ctx->state_len)
            != PARLEY_SYNC_OK)
        {
            ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal", NULL, "the sync state "
                                     "could not be encoded");
            return;
        }

        /* encodings are canonical: equal bytes, equal states */
        if (ctx->state_len == ctx->old_len
            && ngx_memcmp(ctx->state, ctx->old, ctx->old_len) == 0)
        {
            ngx_http_parley_sync_reply(ar, ctx->since);
            return;
        }
    }

    if (ngx_http_parley_api_new_id(ar, &ctx->id) != NGX_OK) {
        return;
    }

    /*
     * One statement, atomic on its own, and no event: a sync cursor is
     * the caller's bookmark, not a change anyone else sees.
     */
    state.data = ctx->state;
    state.len = ctx->state_len;

    ngx_http_parley_api_sql(ar, ngx_http_parley_sync_saved,
        "INSERT INTO sync_cursors (tenant_id, user_id, id, state, "
        "created_at) VALUES (%U, %L, %U, _binary%L, UTC_TIMESTAMP(3))",
        ar->tenant_id, &ar->user_id, ctx->id, &state);
}


static void
ngx_http_parley_sync_saved(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    uint64_t                     before;
    ngx_http_parley_sync_ctx_t  *ctx = ar->data;

    /*
     * A first sync (a device starting over) always purges: that is when a
     * user's abandoned chains are most likely to lie about; other writes
     * purge now and then, so that polling does not pay for it each time.
     */
    if (ctx->since && ngx_random() % NGX_PARLEY_SYNC_PURGE_ODDS != 0) {
        ngx_http_parley_sync_reply(ar, ctx->id);
        return;
    }

    /* the caller's expired rows, a few, by the primary key's prefix */
    before = parley_id_compose(ngx_http_parley_sync_now_ms()
                               - NGX_PARLEY_SYNC_TTL_MS, 0, 0);

    ngx_http_parley_api_sql_any(ar, ngx_http_parley_sync_purged,
        "DELETE FROM sync_cursors WHERE tenant_id = %U AND user_id = %L "
        "AND id < %U LIMIT %U",
        ar->tenant_id, &ar->user_id, before,
        (uint64_t) NGX_PARLEY_SYNC_PURGE_ROWS);
}


static void
ngx_http_parley_sync_purged(ngx_http_parley_api_req_t *ar,
    ngx_parley_db_result_t *res)
{
    ngx_http_parley_sync_ctx_t  *ctx = ar->data;

    /* a purge that failed is tried again by a later sync */
    if (res->status != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, ar->log, 0,
                      "parley sync: purging expired cursors failed: %s",
                      res->error);
    }

    ngx_http_parley_sync_reply(ar, ctx->id);
}


static void
ngx_http_parley_sync_reply(ngx_http_parley_api_req_t *ar, uint64_t id)
{
    char                         token[PARLEY_SYNC_TOKEN_LEN + 1];
    json_t                      *body;
    ngx_http_parley_sync_ctx_t  *ctx = ar->data;

    if (parley_sync_token_encode(id, token, sizeof(token)) != PARLEY_SYNC_OK)
    {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "no token");
        return;
    }

    body = json_pack("{s:O,s:s,s:b}",
                     "events", ctx->events,
                     "next", token,
                     "has_more", (int) ctx->has_more);

    ngx_http_parley_api_reply(ar, NGX_HTTP_OK, body);
}


static uint64_t
ngx_http_parley_sync_now_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}
