
/*
 * ngx_parley_module: node identity and id generation (see the .c file).
 */


#ifndef _NGX_PARLEY_MODULE_H_INCLUDED_
#define _NGX_PARLEY_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "parley_id.h"


extern ngx_module_t  ngx_parley_module;


/* The 10-bit process identity in ids minted by this worker. */
ngx_uint_t ngx_parley_process_id(ngx_cycle_t *cycle);

/*
 * The next id of this worker, strictly increasing even if the clock steps
 * back; NGX_ERROR only if the clock lies before 2025.
 */
ngx_int_t ngx_parley_next_id(uint64_t *id);


#endif /* _NGX_PARLEY_MODULE_H_INCLUDED_ */
