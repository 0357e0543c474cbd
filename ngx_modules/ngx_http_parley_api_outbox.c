
/*
 * The transactional outbox (DESIGN §2.3): an endpoint that changes
 * something inserts, inside its own transaction, one outbox row holding the
 * event envelope that the event pipeline later publishes to Kafka.  The
 * envelope is the one described in docs/events.md:
 *
 *   {"type":"user.created","version":1,"tenant":"<id>","id":"<id>",
 *    "ts":"<ISO 8601>","data":{...}}
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_api.h"


void
ngx_http_parley_api_outbox(ngx_http_parley_api_req_t *ar,
    ngx_http_parley_api_step_pt next, const char *topic, ngx_str_t *key,
    const char *type, json_t *data)
{
    char        ts[32];
    u_char     *p;
    json_t     *env;
    uint64_t    id;
    ngx_tm_t    tm;
    ngx_time_t *tp;

    if (ngx_http_parley_api_new_id(ar, &id) != NGX_OK) {
        json_decref(data);
        return;
    }

    tp = ngx_timeofday();
    ngx_gmtime(tp->sec, &tm);
    p = ngx_sprintf((u_char *) ts, "%4d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                    tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                    tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                    (int) tp->msec);
    *p = '\0';

    env = json_pack("{s:s,s:i,s:o,s:o,s:s,s:o}",
                    "type", type,
                    "version", 1,
                    "tenant", ngx_http_parley_api_id_json(ar->tenant_id),
                    "id", ngx_http_parley_api_id_json(id),
                    "ts", ts,
                    "data", data);

    if (env == NULL) {
        ngx_http_parley_api_fail(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal", NULL, "out of memory");
        return;
    }

    ngx_http_parley_api_sql(ar, next,
        "INSERT INTO outbox (tenant_id, id, topic, msg_key, payload, "
        "created_at) VALUES (%U, %U, %Q, %L, %J, UTC_TIMESTAMP(3))",
        ar->tenant_id, id, topic, key, env);

    json_decref(env);
}
