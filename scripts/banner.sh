#!/usr/bin/env bash
# Prints how to reach the running development stack (facts from var/parley.env).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck disable=SC1091
. "$repo/var/parley.env"
cat <<EOT

Parley is running (make stop to stop it).
  REST API        $PARLEY_BASE_URL   (health: $PARLEY_BASE_URL/healthz)
  WebSocket       $PARLEY_WS_URL?access_token=<user token>   (docs/realtime.md)
  demo tenant     $PARLEY_TENANT_ID
  admin API key   $PARLEY_API_KEY   (shown once; stored hashed)
  operator key    $PARLEY_PLATFORM_KEY   (platform API, /v1/platform/...)
  MariaDB         $PARLEY_DB_URL
  Redis           127.0.0.1:$PARLEY_REDIS_PORT
  Kafka (dev)     $PARLEY_KAFKA_BROKERS   IN-MEMORY: everything is lost when it stops
  logs            $PARLEY_VAR/log/   data: $PARLEY_VAR/
  the same facts, as shell assignments: $PARLEY_VAR/parley.env

Try it:
  curl -s -H "Authorization: Bearer \$PARLEY_API_KEY" -H 'content-type: application/json' \\
       -d '{"user_id":"alice","name":"Alice"}' $PARLEY_BASE_URL/v1/users
  TOKEN=\$(curl -s -H "Authorization: Bearer \$PARLEY_API_KEY" -H 'content-type: application/json' \\
       -d '{}' $PARLEY_BASE_URL/v1/users/alice/tokens | jq -r .token)
  /usr/bin/python3 -m websockets "$PARLEY_WS_URL?access_token=\$TOKEN"   # then type {"op":"start"}
EOT
