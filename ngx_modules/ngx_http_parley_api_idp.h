
/*
 * Tenant identity providers (ngx_http_parley_api_idp.c): a tenant's token
 * settings, and the verification of the user tokens its IdP issues.
 */


#ifndef _NGX_HTTP_PARLEY_API_IDP_H_INCLUDED_
#define _NGX_HTTP_PARLEY_API_IDP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_parley_api.h"
#include "parley_jwt.h"


/*
 * Verifies a user token that Parley did not issue (its kid does not start
 * with "parley:") under the settings of the tenant named by the request
 * header X-Parley-Tenant.  On success sets ar->tenant_id, ar->user_id and
 * ar->auth = NGX_PARLEY_AUTH_USER and calls done(ar); otherwise answers
 * 400/401/403 itself.  header is what parley_jwt_peek() read from token;
 * token must live as long as the request (it points into its headers).
 */
void ngx_http_parley_api_idp_verify(ngx_http_parley_api_req_t *ar,
    ngx_str_t *token, const parley_jwt_header_t *header,
    ngx_http_parley_api_handler_pt done);

/* GET, PUT and DELETE /v1/settings/tokens (tenant API key) */
void ngx_http_parley_api_idp_settings_get(ngx_http_parley_api_req_t *ar);
void ngx_http_parley_api_idp_settings_put(ngx_http_parley_api_req_t *ar);
void ngx_http_parley_api_idp_settings_delete(ngx_http_parley_api_req_t *ar);

/* Drops this worker's parsed key set of a tenant (settings changed). */
void ngx_http_parley_api_idp_forget(uint64_t tenant_id);


#endif /* _NGX_HTTP_PARLEY_API_IDP_H_INCLUDED_ */
