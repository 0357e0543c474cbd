
/*
 * Parley core module: http-level directives that describe the backends,
 * and the per-worker life cycle of their clients.
 *
 *   parley_db      <host:port | unix:/path> user=.. password=.. database=..
 *                  [pool=N] [queue=N] [connect_timeout=T] [timeout=T]
 *                  [reconnect=MIN..MAX];
 *   parley_redis   <host:port> [roles=cache,session,pubsub] [password=..]
 *                  [db=N] [connect_timeout=T] [timeout=T]
 *                  [reconnect=MIN..MAX];
 *   parley_kafka   <host:port[,host:port...]> [timeout=T] [flush_timeout=T]
 *                  [health_topic=NAME];
 *   parley_kafka_property <librdkafka property> <value>;
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_core.h"
#include "parley_backoff.h"


#if !(NGX_THREADS)
#error "Parley needs nginx built with --with-threads"
#endif


#define NGX_PARLEY_DEFAULT_CONNECT_TIMEOUT  2000
#define NGX_PARLEY_DEFAULT_TIMEOUT          5000
#define NGX_PARLEY_DEFAULT_RECONNECT_MIN    100
#define NGX_PARLEY_DEFAULT_RECONNECT_MAX    5000
#define NGX_PARLEY_DEFAULT_DB_POOL          8
#define NGX_PARLEY_DEFAULT_DB_QUEUE         1024
#define NGX_PARLEY_MAX_DB_POOL              256
#define NGX_PARLEY_DEFAULT_KAFKA_FLUSH      3000


typedef struct {
    ngx_str_t                  name;
    ngx_uint_t                 mask;
} ngx_http_parley_role_t;


static ngx_int_t ngx_http_parley_parse_option(ngx_conf_t *cf,
    ngx_command_t *cmd, ngx_str_t *arg, ngx_str_t *key, ngx_str_t *val);
static ngx_int_t ngx_http_parley_parse_timeout_option(ngx_conf_t *cf,
    ngx_command_t *cmd, ngx_str_t *key, ngx_str_t *val,
    ngx_parley_timeouts_t *t);
static ngx_int_t ngx_http_parley_parse_msec(ngx_conf_t *cf,
    ngx_command_t *cmd, ngx_str_t *key, ngx_str_t *val, ngx_msec_t *ms);
static ngx_int_t ngx_http_parley_parse_host_port(ngx_conf_t *cf,
    ngx_command_t *cmd, ngx_str_t *arg, ngx_str_t *host, in_port_t *port);
static ngx_int_t ngx_http_parley_cstr(ngx_conf_t *cf, ngx_str_t *dst,
    ngx_str_t *src);
static void ngx_http_parley_timeouts_init(ngx_parley_timeouts_t *t);

static char *ngx_http_parley_core_db(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_parley_core_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_parley_core_kafka(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_parley_core_kafka_property(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);

static void *ngx_http_parley_core_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_parley_core_init_main_conf(ngx_conf_t *cf, void *conf);
static ngx_int_t ngx_http_parley_core_init_process(ngx_cycle_t *cycle);
static void ngx_http_parley_core_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_parley_core_commands[] = {

    { ngx_string("parley_db"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_parley_core_db,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("parley_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_parley_core_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("parley_kafka"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_parley_core_kafka,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("parley_pubsub_sharded"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_parley_core_main_conf_t, pubsub_sharded),
      NULL },

    { ngx_string("parley_kafka_property"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_parley_core_kafka_property,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_parley_core_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_parley_core_create_main_conf, /* create main configuration */
    ngx_http_parley_core_init_main_conf,   /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_parley_core_module = {
    NGX_MODULE_V1,
    &ngx_http_parley_core_module_ctx,      /* module context */
    ngx_http_parley_core_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_parley_core_init_process,     /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_parley_core_exit_process,     /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_parley_role_t  ngx_http_parley_redis_roles[] = {
    { ngx_string("cache"), 1 << NGX_PARLEY_REDIS_CACHE },
    { ngx_string("session"), 1 << NGX_PARLEY_REDIS_SESSION },
    { ngx_string("pubsub"), 1 << NGX_PARLEY_REDIS_PUBSUB },
    { ngx_null_string, 0 }
};


static void *
ngx_http_parley_core_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_parley_core_main_conf_t  *cmcf;

    cmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_parley_core_main_conf_t));
    if (cmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&cmcf->redis, cf->pool, 2,
                       sizeof(ngx_parley_redis_conf_t))
        != NGX_OK)
    {
        return NULL;
    }

    cmcf->pubsub_sharded = NGX_CONF_UNSET;

    return cmcf;
}


static char *
ngx_http_parley_core_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_parley_core_main_conf_t *cmcf = conf;

    ngx_uint_t                i, role, covered;
    ngx_parley_redis_conf_t  *rc;

    /*
     * Roles a redis line does not claim fall back to the first line, so one
     * "parley_redis 127.0.0.1:6379;" serves cache, session and pub/sub.
     */
    ngx_conf_init_value(cmcf->pubsub_sharded, 0);

    rc = cmcf->redis.elts;
    covered = 0;

    for (i = 0; i < cmcf->redis.nelts; i++) {
        covered |= rc[i].roles;
    }

    if (cmcf->redis.nelts) {
        for (role = 0; role < NGX_PARLEY_REDIS_ROLES; role++) {
            if (!(covered & (1 << role))) {
                rc[0].roles |= 1 << role;
            }
        }
    }

    return NGX_CONF_OK;
}


static void
ngx_http_parley_timeouts_init(ngx_parley_timeouts_t *t)
{
    t->connect_timeout = NGX_PARLEY_DEFAULT_CONNECT_TIMEOUT;
    t->timeout = NGX_PARLEY_DEFAULT_TIMEOUT;
    t->reconnect_min = NGX_PARLEY_DEFAULT_RECONNECT_MIN;
    t->reconnect_max = NGX_PARLEY_DEFAULT_RECONNECT_MAX;
}


static char *
ngx_http_parley_core_db(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_parley_core_main_conf_t *cmcf = conf;

    ngx_int_t              n, rc;
    ngx_str_t             *value, key, val;
    ngx_uint_t             i;
    ngx_parley_db_conf_t  *db;

    if (cmcf->db) {
        return "is duplicate";
    }

    db = ngx_pcalloc(cf->pool, sizeof(ngx_parley_db_conf_t));
    if (db == NULL) {
        return NGX_CONF_ERROR;
    }

    db->pool_size = NGX_PARLEY_DEFAULT_DB_POOL;
    db->queue_size = NGX_PARLEY_DEFAULT_DB_QUEUE;
    db->file = cf->conf_file->file.name.data;
    db->line = cf->conf_file->line;
    ngx_http_parley_timeouts_init(&db->timeouts);

    value = cf->args->elts;

    if (value[1].len > 5 && ngx_strncmp(value[1].data, "unix:", 5) == 0) {
        db->socket.data = value[1].data + 5;
        db->socket.len = value[1].len - 5;
        ngx_str_set(&db->host, "localhost");

    } else if (ngx_http_parley_parse_host_port(cf, cmd, &value[1], &db->host,
                                               &db->port)
               != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_http_parley_parse_option(cf, cmd, &value[i], &key, &val)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        rc = ngx_http_parley_parse_timeout_option(cf, cmd, &key, &val,
                                                  &db->timeouts);
        if (rc == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }

        if (rc == NGX_OK) {
            continue;
        }

        if (key.len == 4 && ngx_strncmp(key.data, "user", 4) == 0) {
            if (ngx_http_parley_cstr(cf, &db->user, &val) != NGX_OK) {
                return NGX_CONF_ERROR;
            }
            continue;
        }

        if (key.len == 8 && ngx_strncmp(key.data, "password", 8) == 0) {
            if (ngx_http_parley_cstr(cf, &db->password, &val) != NGX_OK) {
                return NGX_CONF_ERROR;
            }
            continue;
        }

        if (key.len == 8 && ngx_strncmp(key.data, "database", 8) == 0) {
            if (ngx_http_parley_cstr(cf, &db->database, &val) != NGX_OK) {
                return NGX_CONF_ERROR;
            }
            continue;
        }

        if ((key.len == 4 && ngx_strncmp(key.data, "pool", 4) == 0)
            || (key.len == 5 && ngx_strncmp(key.data, "queue", 5) == 0))
        {
            n = ngx_atoi(val.data, val.len);

            if (n == NGX_ERROR || n < 1
                || (key.len == 4 && n > NGX_PARLEY_MAX_DB_POOL))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid %V \"%V\" in \"%V\", "
                                   "expected 1..%d",
                                   &key, &val, &cmd->name,
                                   key.len == 4 ? NGX_PARLEY_MAX_DB_POOL
                                                : NGX_MAX_INT32_VALUE);
                return NGX_CONF_ERROR;
            }

            if (key.len == 4) {
                db->pool_size = n;
            } else {
                db->queue_size = n;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown parameter \"%V\" in \"%V\"",
                           &value[i], &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (db->user.len == 0 || db->database.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" needs user= and database=", &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (db->password.data == NULL) {
        ngx_str_set(&db->password, "");
    }

    cmcf->db = db;

    return NGX_CONF_OK;
}


static char *
ngx_http_parley_core_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_parley_core_main_conf_t *cmcf = conf;

    u_char                   *p, *last, *start;
    ngx_int_t                 rc;
    ngx_str_t                *value, key, val, role;
    ngx_uint_t                i, j, k, mask;
    ngx_parley_redis_conf_t  *redis, *other;

    redis = ngx_array_push(&cmcf->redis);
    if (redis == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(redis, sizeof(ngx_parley_redis_conf_t));
    ngx_http_parley_timeouts_init(&redis->timeouts);
    ngx_str_set(&redis->password, "");

    value = cf->args->elts;

    if (ngx_http_parley_parse_host_port(cf, cmd, &value[1], &redis->host,
                                        &redis->port)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_http_parley_parse_option(cf, cmd, &value[i], &key, &val)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        rc = ngx_http_parley_parse_timeout_option(cf, cmd, &key, &val,
                                                  &redis->timeouts);
        if (rc == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }

        if (rc == NGX_OK) {
            continue;
        }

        if (key.len == 8 && ngx_strncmp(key.data, "password", 8) == 0) {
            if (ngx_http_parley_cstr(cf, &redis->password, &val) != NGX_OK) {
                return NGX_CONF_ERROR;
            }
            continue;
        }

        if (key.len == 2 && ngx_strncmp(key.data, "db", 2) == 0) {
            redis->db = ngx_atoi(val.data, val.len);
            if (redis->db == NGX_ERROR || redis->db > 65535) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid db \"%V\" in \"%V\"",
                                   &val, &cmd->name);
                return NGX_CONF_ERROR;
            }
            continue;
        }

        if (key.len == 5 && ngx_strncmp(key.data, "roles", 5) == 0) {
            redis->name = val;
            start = val.data;
            last = val.data + val.len;

            while (start < last) {
                p = ngx_strlchr(start, last, ',');
                if (p == NULL) {
                    p = last;
                }

                role.data = start;
                role.len = p - start;
                mask = 0;

                for (k = 0; ngx_http_parley_redis_roles[k].mask; k++) {
                    if (role.len == ngx_http_parley_redis_roles[k].name.len
                        && ngx_strncmp(role.data,
                                       ngx_http_parley_redis_roles[k].name.data,
                                       role.len)
                           == 0)
                    {
                        mask = ngx_http_parley_redis_roles[k].mask;
                        break;
                    }
                }

                if (mask == 0) {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "unknown role \"%V\" in \"%V\", "
                                       "expected cache, session or pubsub",
                                       &role, &cmd->name);
                    return NGX_CONF_ERROR;
                }

                redis->roles |= mask;
                start = p + 1;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown parameter \"%V\" in \"%V\"",
                           &value[i], &cmd->name);
        return NGX_CONF_ERROR;
    }

    other = cmcf->redis.elts;

    for (j = 0; j + 1 < cmcf->redis.nelts; j++) {
        if (other[j].roles & redis->roles) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" role \"%V\" is already served by "
                               "%V:%d", &cmd->name, &redis->name,
                               &other[j].host, (int) other[j].port);
            return NGX_CONF_ERROR;
        }

        if (redis->roles == 0 || other[j].roles == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\": with several redis servers each "
                               "needs roles=", &cmd->name);
            return NGX_CONF_ERROR;
        }
    }

    if (redis->name.len == 0) {
        ngx_str_set(&redis->name, "all");
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_parley_core_kafka(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_parley_core_main_conf_t *cmcf = conf;

    u_char                   *p, *last, *start;
    ngx_str_t                *value, key, val, broker, host;
    ngx_uint_t                i;
    in_port_t                 port;
    ngx_str_t                 name = ngx_string("parley");
    ngx_parley_kafka_conf_t  *kafka;

    if (cmcf->kafka) {
        return "is duplicate";
    }

    kafka = ngx_pcalloc(cf->pool, sizeof(ngx_parley_kafka_conf_t));
    if (kafka == NULL) {
        return NGX_CONF_ERROR;
    }

    kafka->timeout = NGX_PARLEY_DEFAULT_TIMEOUT;
    kafka->flush_timeout = NGX_PARLEY_DEFAULT_KAFKA_FLUSH;

    value = cf->args->elts;

    /* every broker of the list must be a host:port */
    start = value[1].data;
    last = value[1].data + value[1].len;

    while (start < last) {
        p = ngx_strlchr(start, last, ',');
        if (p == NULL) {
            p = last;
        }

        broker.data = start;
        broker.len = p - start;

        if (ngx_http_parley_parse_host_port(cf, cmd, &broker, &host, &port)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        start = p + 1;
    }

    if (ngx_http_parley_cstr(cf, &kafka->brokers, &value[1]) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_http_parley_parse_option(cf, cmd, &value[i], &key, &val)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        if (key.len == 7 && ngx_strncmp(key.data, "timeout", 7) == 0) {
            if (ngx_http_parley_parse_msec(cf, cmd, &key, &val,
                                           &kafka->timeout)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }
            continue;
        }

        if (key.len == 12 && ngx_strncmp(key.data, "health_topic", 12) == 0) {
            if (val.len == 0 || val.len > 249) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid health_topic \"%V\" in \"%V\", "
                                   "expected 1..249 characters", &val,
                                   &cmd->name);
                return NGX_CONF_ERROR;
            }

            if (ngx_http_parley_cstr(cf, &kafka->health_topic, &val)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }
            continue;
        }

        if (key.len == 13 && ngx_strncmp(key.data, "flush_timeout", 13) == 0)
        {
            if (ngx_http_parley_parse_msec(cf, cmd, &key, &val,
                                           &kafka->flush_timeout)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown parameter \"%V\" in \"%V\"",
                           &value[i], &cmd->name);
        return NGX_CONF_ERROR;
    }

    /* metadata round trips are blocking calls: they run on this pool */
    if (ngx_thread_pool_add(cf, &name) == NULL) {
        return NGX_CONF_ERROR;
    }

    kafka->properties = ngx_array_create(cf->pool, 4, sizeof(ngx_keyval_t));
    if (kafka->properties == NULL) {
        return NGX_CONF_ERROR;
    }

    cmcf->kafka = kafka;

    return NGX_CONF_OK;
}


static char *
ngx_http_parley_core_kafka_property(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_parley_core_main_conf_t *cmcf = conf;

    char             errstr[256];
    ngx_str_t       *value;
    ngx_keyval_t    *kv;
    rd_kafka_conf_t *probe;

    if (cmcf->kafka == NULL) {
        return "must follow \"parley_kafka\"";
    }

    value = cf->args->elts;

    /* librdkafka knows its properties: let it judge the name and value */
    probe = rd_kafka_conf_new();
    if (probe == NULL) {
        return NGX_CONF_ERROR;
    }

    if (rd_kafka_conf_set(probe, (char *) value[1].data,
                          (char *) value[2].data, errstr, sizeof(errstr))
        != RD_KAFKA_CONF_OK)
    {
        rd_kafka_conf_destroy(probe);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"%V\" \"%V\": %s",
                           &cmd->name, &value[1], errstr);
        return NGX_CONF_ERROR;
    }

    rd_kafka_conf_destroy(probe);

    kv = ngx_array_push(cmcf->kafka->properties);
    if (kv == NULL) {
        return NGX_CONF_ERROR;
    }

    kv->key = value[1];
    kv->value = value[2];

    return NGX_CONF_OK;
}


/* "key=value" with a non-empty key; the value may be empty */

static ngx_int_t
ngx_http_parley_parse_option(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_str_t *arg, ngx_str_t *key, ngx_str_t *val)
{
    u_char  *eq;

    eq = ngx_strlchr(arg->data, arg->data + arg->len, '=');

    if (eq == NULL || eq == arg->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"%V\", "
                           "expected name=value", arg, &cmd->name);
        return NGX_ERROR;
    }

    key->data = arg->data;
    key->len = eq - arg->data;
    val->data = eq + 1;
    val->len = arg->data + arg->len - (eq + 1);

    return NGX_OK;
}


/* NGX_OK: consumed; NGX_DECLINED: not a timeout option; NGX_ERROR: bad */

static ngx_int_t
ngx_http_parley_parse_timeout_option(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_str_t *key, ngx_str_t *val, ngx_parley_timeouts_t *t)
{
    u_char     *dots;
    ngx_str_t   lo, hi;

    if (key->len == 15
        && ngx_strncmp(key->data, "connect_timeout", 15) == 0)
    {
        return ngx_http_parley_parse_msec(cf, cmd, key, val,
                                          &t->connect_timeout);
    }

    if (key->len == 7 && ngx_strncmp(key->data, "timeout", 7) == 0) {
        return ngx_http_parley_parse_msec(cf, cmd, key, val, &t->timeout);
    }

    if (key->len == 9 && ngx_strncmp(key->data, "reconnect", 9) == 0) {
        dots = ngx_strlcasestrn(val->data, val->data + val->len,
                                (u_char *) "..", 2 - 1);
        if (dots == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid reconnect \"%V\" in \"%V\", "
                               "expected MIN..MAX such as 100ms..5s",
                               val, &cmd->name);
            return NGX_ERROR;
        }

        lo.data = val->data;
        lo.len = dots - val->data;
        hi.data = dots + 2;
        hi.len = val->data + val->len - hi.data;

        if (ngx_http_parley_parse_msec(cf, cmd, key, &lo, &t->reconnect_min)
               != NGX_OK
            || ngx_http_parley_parse_msec(cf, cmd, key, &hi,
                                          &t->reconnect_max)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (t->reconnect_min == 0 || t->reconnect_max < t->reconnect_min) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid reconnect \"%V\" in \"%V\", "
                               "MIN must be positive and not above MAX",
                               val, &cmd->name);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_parley_parse_msec(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_str_t *key, ngx_str_t *val, ngx_msec_t *ms)
{
    ngx_int_t  n;

    n = ngx_parse_time(val, 0);

    if (n == NGX_ERROR || n == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid %V \"%V\" in \"%V\", expected a "
                           "positive time such as 500ms or 2s",
                           key, val, &cmd->name);
        return NGX_ERROR;
    }

    *ms = (ngx_msec_t) n;

    return NGX_OK;
}


static ngx_int_t
ngx_http_parley_parse_host_port(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_str_t *arg, ngx_str_t *host, in_port_t *port)
{
    u_char     *colon;
    ngx_int_t   n;
    ngx_str_t   h;

    colon = NULL;

    if (arg->len) {
        colon = ngx_strlchr(arg->data, arg->data + arg->len, ':');
    }

    if (colon == NULL || colon == arg->data) {
        goto invalid;
    }

    n = ngx_atoi(colon + 1, arg->data + arg->len - (colon + 1));
    if (n < 1 || n > 65535) {
        goto invalid;
    }

    h.data = arg->data;
    h.len = colon - arg->data;

    if (ngx_http_parley_cstr(cf, host, &h) != NGX_OK) {
        return NGX_ERROR;
    }

    *port = (in_port_t) n;

    return NGX_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid address \"%V\" in \"%V\", "
                       "expected host:port", arg, &cmd->name);
    return NGX_ERROR;
}


/* a NUL-terminated copy, for the C libraries */

static ngx_int_t
ngx_http_parley_cstr(ngx_conf_t *cf, ngx_str_t *dst, ngx_str_t *src)
{
    dst->data = ngx_pnalloc(cf->pool, src->len + 1);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src->data, src->len);
    dst->data[src->len] = '\0';
    dst->len = src->len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_parley_core_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                         i, role;
    ngx_parley_redis_conf_t           *rc;
    ngx_http_parley_core_main_conf_t  *cmcf;

    /*
     * Only processes that serve requests own clients: the cache manager and
     * loader also run init_process, but exit without exit_process.
     */
    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    if (ngx_get_conf(cycle->conf_ctx, ngx_http_module) == NULL) {
        return NGX_OK;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_parley_core_module);
    if (cmcf == NULL) {
        return NGX_OK;
    }

    if (cmcf->db) {
        cmcf->db_client = ngx_parley_db_create(cycle, cmcf->db);
        if (cmcf->db_client == NULL) {
            return NGX_ERROR;
        }
    }

    if (cmcf->redis.nelts) {
        cmcf->redis_clients = ngx_pcalloc(cycle->pool,
                                          cmcf->redis.nelts
                                          * sizeof(ngx_parley_redis_t *));
        if (cmcf->redis_clients == NULL) {
            return NGX_ERROR;
        }

        rc = cmcf->redis.elts;

        for (i = 0; i < cmcf->redis.nelts; i++) {
            cmcf->redis_clients[i] = ngx_parley_redis_create(cycle, &rc[i]);
            if (cmcf->redis_clients[i] == NULL) {
                return NGX_ERROR;
            }

            for (role = 0; role < NGX_PARLEY_REDIS_ROLES; role++) {
                if (rc[i].roles & (1 << role)) {
                    cmcf->redis_role[role] = cmcf->redis_clients[i];
                }
            }
        }
    }

    if (cmcf->kafka) {
        cmcf->kafka_client = ngx_parley_kafka_create(cycle, cmcf->kafka);
        if (cmcf->kafka_client == NULL) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static void
ngx_http_parley_core_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                         i;
    ngx_http_parley_core_main_conf_t  *cmcf;

    if (ngx_get_conf(cycle->conf_ctx, ngx_http_module) == NULL) {
        return;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_parley_core_module);
    if (cmcf == NULL) {
        return;
    }

    if (cmcf->kafka_client) {
        ngx_parley_kafka_destroy(cmcf->kafka_client);
        cmcf->kafka_client = NULL;
    }

    if (cmcf->redis_clients) {
        for (i = 0; i < cmcf->redis.nelts; i++) {
            if (cmcf->redis_clients[i]) {
                ngx_parley_redis_destroy(cmcf->redis_clients[i]);
                cmcf->redis_clients[i] = NULL;
            }
        }
    }

    ngx_memzero(cmcf->redis_role, sizeof(cmcf->redis_role));

    if (cmcf->db_client) {
        ngx_parley_db_destroy(cmcf->db_client);
        cmcf->db_client = NULL;
    }
}


ngx_msec_t
ngx_parley_reconnect_delay(ngx_parley_timeouts_t *t, ngx_uint_t failures)
{
    return (ngx_msec_t) parley_backoff_delay(t->reconnect_min,
                                             t->reconnect_max,
                                             (unsigned) failures,
                                             (uint32_t) ngx_random());
}


ngx_connection_t *
ngx_parley_wrap_fd(ngx_socket_t fd, ngx_log_t *log)
{
    ngx_connection_t  *c;

    c = ngx_get_connection(fd, log);
    if (c == NULL) {
        return NULL;
    }

    c->read->log = log;
    c->write->log = log;
    c->log = log;

    /* the library did the connect; treat the socket as ready to write */
    c->write->ready = 1;

    return c;
}


/*
 * Detaches an nginx connection from an fd its library will close: events
 * off, timers off, posted events dropped, the connection slot freed, the fd
 * left open.  The fd must still be open (events are deleted with an
 * epoll_ctl); when the library has already closed it, the caller deletes
 * its events with NGX_CLOSE_EVENT first, as the DB client does.
 */
void
ngx_parley_unwrap_fd(ngx_connection_t *c)
{
    if (c == NULL) {
        return;
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (c->read->active) {
        ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (c->write->active) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}
