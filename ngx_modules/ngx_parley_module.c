
/*
 * ngx_parley_module: the identity of this nginx node among Parley's
 * processes, and the 64-bit time-ordered id generator every worker uses
 * (DESIGN §2.7: ids come from the application, never AUTO_INCREMENT).
 *
 *   parley_node_id <0..62>;      main context, default 0
 *
 * An id holds 10 bits of process identity: node id * 16 + worker number, so
 * up to 63 nginx nodes with up to 16 workers each mint ids that never
 * collide.  Node 63 is left to tools (parleyctl mints as 1023).  This module
 * comes first in ngx_parley_module.so, which is why the file is named after
 * it.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_parley_module.h"


#define NGX_PARLEY_MAX_NODE_ID     62
#define NGX_PARLEY_WORKERS_PER_ID  16


typedef struct {
    ngx_int_t                  node_id;
} ngx_parley_conf_t;


static void *ngx_parley_create_conf(ngx_cycle_t *cycle);
static char *ngx_parley_init_conf(ngx_cycle_t *cycle, void *conf);
static char *ngx_parley_node_id(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_parley_init_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_parley_commands[] = {

    { ngx_string("parley_node_id"),
      NGX_MAIN_CONF|NGX_DIRECT_CONF|NGX_CONF_TAKE1,
      ngx_parley_node_id,
      0,
      0,
      NULL },

      ngx_null_command
};


static ngx_core_module_t  ngx_parley_module_ctx = {
    ngx_string("parley"),
    ngx_parley_create_conf,
    ngx_parley_init_conf
};


ngx_module_t  ngx_parley_module = {
    NGX_MODULE_V1,
    &ngx_parley_module_ctx,                /* module context */
    ngx_parley_commands,                   /* module directives */
    NGX_CORE_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_parley_init_process,               /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* one generator per worker process: workers are single-threaded */
static parley_id_gen_t  ngx_parley_id_gen;


static void *
ngx_parley_create_conf(ngx_cycle_t *cycle)
{
    ngx_parley_conf_t  *pcf;

    pcf = ngx_pcalloc(cycle->pool, sizeof(ngx_parley_conf_t));
    if (pcf == NULL) {
        return NULL;
    }

    pcf->node_id = NGX_CONF_UNSET;

    return pcf;
}


static char *
ngx_parley_init_conf(ngx_cycle_t *cycle, void *conf)
{
    ngx_parley_conf_t *pcf = conf;

    ngx_core_conf_t  *ccf;

    ngx_conf_init_value(pcf->node_id, 0);

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (ccf->worker_processes > NGX_PARLEY_WORKERS_PER_ID) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "Parley supports at most %d worker processes per "
                      "node, \"worker_processes\" is %i",
                      NGX_PARLEY_WORKERS_PER_ID, ccf->worker_processes);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_parley_node_id(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_parley_conf_t *pcf = conf;

    ngx_str_t  *value;

    if (pcf->node_id != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    pcf->node_id = ngx_atoi(value[1].data, value[1].len);

    if (pcf->node_id == NGX_ERROR || pcf->node_id > NGX_PARLEY_MAX_NODE_ID) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"%V\" \"%V\", expected 0..%d",
                           &cmd->name, &value[1], NGX_PARLEY_MAX_NODE_ID);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_parley_init_process(ngx_cycle_t *cycle)
{
    ngx_parley_conf_t  *pcf;

    pcf = (ngx_parley_conf_t *) ngx_get_conf(cycle->conf_ctx,
                                             ngx_parley_module);

    /* single process mode and helper processes count as worker 0 */
    if (parley_id_gen_init(&ngx_parley_id_gen,
                           ngx_parley_process_id(cycle))
        != PARLEY_ID_OK)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "parley: invalid process id for node %i worker %ui",
                      pcf->node_id, ngx_worker);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_uint_t
ngx_parley_process_id(ngx_cycle_t *cycle)
{
    ngx_parley_conf_t  *pcf;

    pcf = (ngx_parley_conf_t *) ngx_get_conf(cycle->conf_ctx,
                                             ngx_parley_module);

    return (ngx_uint_t) pcf->node_id * NGX_PARLEY_WORKERS_PER_ID
           + (ngx_worker % NGX_PARLEY_WORKERS_PER_ID);
}


ngx_int_t
ngx_parley_next_id(uint64_t *id)
{
    ngx_time_t  *tp;
    uint64_t     now;

    tp = ngx_timeofday();
    now = (uint64_t) tp->sec * 1000 + tp->msec;

    if (parley_id_next(&ngx_parley_id_gen, now, id) != PARLEY_ID_OK) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "parley: id generator refused clock %uL", now);
        return NGX_ERROR;
    }

    return NGX_OK;
}
