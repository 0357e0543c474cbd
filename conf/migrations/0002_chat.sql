-- 0002: the chat data model — users, conversations, members, messages,
-- reactions, the per-conversation event log that sync reads, server-side
-- sync cursors, and the outbox drained to Kafka.
--
-- TiDB rules as in 0001: application ids (lib/parley_id.h), tenant_id first
-- in every primary key (one tenant's rows cluster together and no query can
-- forget the tenant), no foreign keys, triggers or RETURNING.

-- Users are named by the tenant (user_id is the tenant's own id for them).
-- token_epoch revokes every token issued before it (seconds, Unix time).
-- Erasure (GDPR) blanks the personal columns and keeps the row, so other
-- members' history still resolves the sender as "deleted user".
CREATE TABLE IF NOT EXISTS users (
    tenant_id    BIGINT UNSIGNED NOT NULL,
    user_id      VARCHAR(128)    NOT NULL,
    name         VARCHAR(255)    NOT NULL DEFAULT '',
    avatar_url   VARCHAR(2048)   NOT NULL DEFAULT '',
    metadata     JSON            NULL,
    role         VARCHAR(16)     NOT NULL DEFAULT 'user',
    status       VARCHAR(16)     NOT NULL DEFAULT 'active',
    token_epoch  BIGINT          NOT NULL DEFAULT 0,
    created_at   DATETIME(3)     NOT NULL,
    updated_at   DATETIME(3)     NOT NULL,
    PRIMARY KEY (tenant_id, user_id),
    KEY ix_users_name (tenant_id, name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Revoked token ids, kept until the token would have expired anyway.
CREATE TABLE IF NOT EXISTS revoked_tokens (
    tenant_id    BIGINT UNSIGNED NOT NULL,
    jti          VARCHAR(64)     NOT NULL,
    user_id      VARCHAR(128)    NOT NULL,
    expires_at   BIGINT          NOT NULL,
    PRIMARY KEY (tenant_id, jti)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS user_blocks (
    tenant_id    BIGINT UNSIGNED NOT NULL,
    user_id      VARCHAR(128)    NOT NULL,
    blocked_id   VARCHAR(128)    NOT NULL,
    created_at   DATETIME(3)     NOT NULL,
    PRIMARY KEY (tenant_id, user_id, blocked_id),
    KEY ix_user_blocks_blocked (tenant_id, blocked_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- A conversation: kind 'direct' (exactly two members, found by direct_key,
-- the two user ids in byte order joined by a NUL) or 'group' with access
-- 'public', 'private' or 'password'.  last_seq is the gap-free message
-- sequence, event_seq the gap-free sequence of its event log; both are
-- advanced under this row's lock inside the writing transaction.
CREATE TABLE IF NOT EXISTS conversations (
    tenant_id        BIGINT UNSIGNED NOT NULL,
    id               BIGINT UNSIGNED NOT NULL,
    kind             VARCHAR(16)     NOT NULL,
    access           VARCHAR(16)     NOT NULL DEFAULT 'private',
    password_hash    CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
    direct_key       VARBINARY(300)  NULL,
    name             VARCHAR(255)    NOT NULL DEFAULT '',
    description      VARCHAR(2048)   NOT NULL DEFAULT '',
    avatar_url       VARCHAR(2048)   NOT NULL DEFAULT '',
    metadata         JSON            NULL,
    created_by       VARCHAR(128)    NOT NULL,
    member_count     INT UNSIGNED    NOT NULL DEFAULT 0,
    last_seq         BIGINT UNSIGNED NOT NULL DEFAULT 0,
    event_seq        BIGINT UNSIGNED NOT NULL DEFAULT 0,
    last_message_at  DATETIME(3)     NULL,
    created_at       DATETIME(3)     NOT NULL,
    updated_at       DATETIME(3)     NOT NULL,
    deleted_at       DATETIME(3)     NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE KEY uk_conversations_direct (tenant_id, direct_key),
    KEY ix_conversations_public (tenant_id, access, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Membership, current and past: state 'active', 'left', 'kicked' or
-- 'banned'.  joined_event and left_event bound the part of the event log
-- the member may read; delivered_seq and read_seq are receipt cursors.
CREATE TABLE IF NOT EXISTS members (
    tenant_id        BIGINT UNSIGNED NOT NULL,
    conversation_id  BIGINT UNSIGNED NOT NULL,
    user_id          VARCHAR(128)    NOT NULL,
    role             VARCHAR(16)     NOT NULL DEFAULT 'participant',
    state            VARCHAR(16)     NOT NULL DEFAULT 'active',
    joined_seq       BIGINT UNSIGNED NOT NULL DEFAULT 0,
    joined_event     BIGINT UNSIGNED NOT NULL DEFAULT 0,
    left_event       BIGINT UNSIGNED NULL,
    delivered_seq    BIGINT UNSIGNED NOT NULL DEFAULT 0,
    read_seq         BIGINT UNSIGNED NOT NULL DEFAULT 0,
    last_activity_at DATETIME(3)     NOT NULL,
    created_at       DATETIME(3)     NOT NULL,
    updated_at       DATETIME(3)     NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id, user_id),
    KEY ix_members_user (tenant_id, user_id, state, last_activity_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Messages, addressed by (conversation, seq).  client_id is the sender's
-- idempotency key: a retry finds the stored message through
-- uk_messages_client and never stores a second copy.  A deleted message
-- keeps its row (a tombstone) with its content erased.
CREATE TABLE IF NOT EXISTS messages (
    tenant_id        BIGINT UNSIGNED NOT NULL,
    conversation_id  BIGINT UNSIGNED NOT NULL,
    seq              BIGINT UNSIGNED NOT NULL,
    id               BIGINT UNSIGNED NOT NULL,
    client_id        VARCHAR(64)     NOT NULL,
    sender_id        VARCHAR(128)    NOT NULL,
    type             VARCHAR(16)     NOT NULL,
    custom_type      VARCHAR(64)     NOT NULL DEFAULT '',
    text             MEDIUMTEXT      NULL,
    metadata         JSON            NULL,
    attachment       JSON            NULL,
    mentions         JSON            NULL,
    parent_seq       BIGINT UNSIGNED NULL,
    reply_count      INT UNSIGNED    NOT NULL DEFAULT 0,
    last_reply_at    DATETIME(3)     NULL,
    reactions        JSON            NULL,
    created_at       DATETIME(3)     NOT NULL,
    edited_at        DATETIME(3)     NULL,
    deleted_at       DATETIME(3)     NULL,
    PRIMARY KEY (tenant_id, conversation_id, seq),
    UNIQUE KEY uk_messages_id (tenant_id, id),
    UNIQUE KEY uk_messages_client (tenant_id, sender_id, client_id),
    KEY ix_messages_thread (tenant_id, conversation_id, parent_seq, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Who reacted with what; messages.reactions caches the counts per emoji.
CREATE TABLE IF NOT EXISTS reactions (
    tenant_id        BIGINT UNSIGNED NOT NULL,
    conversation_id  BIGINT UNSIGNED NOT NULL,
    seq              BIGINT UNSIGNED NOT NULL,
    emoji            VARCHAR(64)     NOT NULL,
    user_id          VARCHAR(128)    NOT NULL,
    created_at       DATETIME(3)     NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id, seq, emoji, user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Everything that changes a conversation, in order: message new, edited,
-- deleted, reactions, receipts, membership.  event_seq is gap-free per
-- conversation; sync reads this log (docs/events.md has the shapes).
CREATE TABLE IF NOT EXISTS conversation_events (
    tenant_id        BIGINT UNSIGNED NOT NULL,
    conversation_id  BIGINT UNSIGNED NOT NULL,
    event_seq        BIGINT UNSIGNED NOT NULL,
    type             VARCHAR(32)     NOT NULL,
    actor_id         VARCHAR(128)    NOT NULL,
    subject_id       VARCHAR(128)    NULL,
    message_seq      BIGINT UNSIGNED NULL,
    payload          JSON            NOT NULL,
    created_at       DATETIME(3)     NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id, event_seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Server-side sync cursors: a sync token names one row; its state holds the
-- caller's position in every conversation.  Rows never change, so a page
-- asked for twice with the same token is the same page.
CREATE TABLE IF NOT EXISTS sync_cursors (
    tenant_id    BIGINT UNSIGNED NOT NULL,
    user_id      VARCHAR(128)    NOT NULL,
    id           BIGINT UNSIGNED NOT NULL,
    state        MEDIUMBLOB      NOT NULL,
    created_at   DATETIME(3)     NOT NULL,
    PRIMARY KEY (tenant_id, user_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The transactional outbox (DESIGN §2.3): written in the same transaction as
-- the change it announces, drained to Kafka in id order, deleted once the
-- broker acknowledged.
CREATE TABLE IF NOT EXISTS outbox (
    tenant_id    BIGINT UNSIGNED NOT NULL,
    id           BIGINT UNSIGNED NOT NULL,
    topic        VARCHAR(128)    NOT NULL,
    msg_key      VARCHAR(128)    NOT NULL,
    payload      MEDIUMBLOB      NOT NULL,
    created_at   DATETIME(3)     NOT NULL,
    PRIMARY KEY (id),
    KEY ix_outbox_tenant (tenant_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
