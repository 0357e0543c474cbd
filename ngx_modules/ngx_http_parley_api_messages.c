
/*
 * Parley REST API: messages endpoints.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_parley_api.h"


ngx_http_parley_api_route_t  ngx_http_parley_api_messages_routes[] = {
    { 0, NULL, 0, NULL, NULL, 0 }
};
