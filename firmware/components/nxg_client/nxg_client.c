/* nxg_client.c: the device's protocol state machine (see nxg_client.h). */
#include "nxg_client.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "nxg_messages.h"

#define PAIR_USERNAME "pair"

/* ---- names ----------------------------------------------------------------------------------- */

const char *nxg_err_name(nxg_err_t err)
{
    switch (err) {
    case NXG_OK:
        return "ok";
    case NXG_ERR_ARG:
        return "bad argument";
    case NXG_ERR_STATE:
        return "wrong state";
    case NXG_ERR_TOO_LARGE:
        return "too large";
    case NXG_ERR_JSON:
        return "malformed message";
    case NXG_ERR_NO_MEMORY:
        return "out of memory";
    case NXG_ERR_TRANSPORT:
        return "transport error";
    case NXG_ERR_STORE:
        return "token store error";
    case NXG_ERR_FULL:
        return "no free slot";
    }
    return "?";
}

const char *nxg_state_name(nxg_state_t state)
{
    switch (state) {
    case NXG_STATE_BACKOFF:
        return "backoff";
    case NXG_STATE_PAIR_CONNECTING:
        return "pair_connecting";
    case NXG_STATE_PAIRING:
        return "pairing";
    case NXG_STATE_AUTH_CONNECTING:
        return "auth_connecting";
    case NXG_STATE_AUTHENTICATING:
        return "authenticating";
    case NXG_STATE_ONLINE:
        return "online";
    case NXG_STATE_STOPPED:
        return "stopped";
    }
    return "?";
}

/* ---- helpers --------------------------------------------------------------------------------- */

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void say(nxg_client_t *c, const char *fmt, ...)
{
    if (c->cfg.log == NULL) {
        return;
    }
    va_list args;
    va_start(args, fmt);
    int written = vsnprintf(c->line, sizeof(c->line), fmt, args);
    va_end(args);
    if (written >= 0) {
        c->cfg.log(c->cfg.user, c->line);
    }
}

uint32_t nxg_backoff_ms(uint32_t failures, uint32_t random_value)
{
    uint32_t ceiling = NXG_BACKOFF_MIN_MS;
    for (uint32_t i = 1; i < failures && ceiling < NXG_BACKOFF_MAX_MS; i++) {
        ceiling = ceiling > NXG_BACKOFF_MAX_MS / 2 ? NXG_BACKOFF_MAX_MS : ceiling * 2;
    }
    if (ceiling > NXG_BACKOFF_MAX_MS) {
        ceiling = NXG_BACKOFF_MAX_MS;
    }
    /* "equal jitter": never below half the step (no tight loop), spread over the other half
     * (a fleet rebooting together does not reconnect together) */
    uint32_t half = ceiling / 2;
    /* random_value scaled onto 0..half (not %, which would favour small values) */
    return half + (uint32_t)(((uint64_t)random_value * (half + 1u)) >> 32);
}

static const char *pair_client_id(const nxg_client_t *c)
{
    return c->cfg.pair_id != NULL ? c->cfg.pair_id : c->pair_id;
}

static int publish(nxg_client_t *c, const char *topic, int len)
{
    if (len < 0) {
        c->stats.tx_errors++;
        return len;
    }
    int rc = c->cfg.transport.publish(c->cfg.transport.ctx, c->cfg.transport.wire == NXG_WIRE_MQTT ? topic : NULL,
                                      c->tx, (size_t)len);
    if (rc != 0) {
        c->stats.tx_errors++;
        return NXG_ERR_TRANSPORT;
    }
    return NXG_OK;
}

static const char *device_topic(nxg_client_t *c, const char *leaf)
{
    snprintf(c->topic, sizeof(c->topic), "nxg/%s/%s", c->serial, leaf);
    return c->topic;
}

/* Drops the connection and waits before the next attempt; `immediately` skips the wait. */
static void retry(nxg_client_t *c, bool immediately)
{
    if (c->state != NXG_STATE_BACKOFF && c->state != NXG_STATE_STOPPED) {
        c->cfg.transport.disconnect(c->cfg.transport.ctx);
    }
    if (c->state == NXG_STATE_STOPPED) {
        return;
    }
    c->state = NXG_STATE_BACKOFF;
    if (immediately) {
        c->deadline_ms = c->now_ms;
        return;
    }
    c->failures++;
    uint32_t wait = nxg_backoff_ms(c->failures, c->cfg.random != NULL ? c->cfg.random(c->cfg.user) : 0);
    c->deadline_ms = c->now_ms + wait;
    say(c, "retry in %lu ms (attempt %lu)", (unsigned long)wait, (unsigned long)c->failures);
}

static void go_online(nxg_client_t *c)
{
    c->state = NXG_STATE_ONLINE;
    c->online_since_ms = c->now_ms;
    c->fresh_token = false;
    say(c, "connected");
    if (c->cfg.transport.wire == NXG_WIRE_MQTT) {
        if (c->cfg.transport.subscribe(c->cfg.transport.ctx, device_topic(c, "cmd")) != 0) {
            say(c, "subscribe failed");
            retry(c, false);
            return;
        }
        /* the gateway protocol has no manifest message: there the server keeps what an admin set */
        int len = nxg_msg_encode_manifest(c->tx, sizeof(c->tx), c->handlers, c->handler_count);
        if (publish(c, device_topic(c, "manifest"), len) != NXG_OK) {
            say(c, "manifest not sent: %s", nxg_err_name(len < 0 ? (nxg_err_t)len : NXG_ERR_TRANSPORT));
        }
    }
}

static void start_connect(nxg_client_t *c)
{
    c->stats.attempts++;
    const nxg_transport_t *t = &c->cfg.transport;
    bool mqtt = t->wire == NXG_WIRE_MQTT;
    int rc;
    if (c->have_token) {
        c->state = NXG_STATE_AUTH_CONNECTING;
        rc = t->connect(t->ctx, mqtt ? c->serial : NULL, mqtt ? c->serial : NULL, mqtt ? c->token : NULL);
    } else if (c->cfg.code != NULL && c->cfg.code[0] != '\0') {
        c->state = NXG_STATE_PAIR_CONNECTING;
        rc = t->connect(t->ctx, mqtt ? pair_client_id(c) : NULL, mqtt ? PAIR_USERNAME : NULL, mqtt ? c->cfg.code : NULL);
    } else {
        say(c, "no token stored and no connection code: stopped");
        c->state = NXG_STATE_STOPPED;
        return;
    }
    c->deadline_ms = c->now_ms + NXG_PAIR_TIMEOUT_MS;
    if (rc != 0) {
        say(c, "connect failed");
        c->state = NXG_STATE_BACKOFF; /* nothing to disconnect */
        retry(c, false);
    }
}

/* The stored token is no longer valid: erase it and pair again with the code. */
static void auth_reset(nxg_client_t *c)
{
    c->stats.auth_resets++;
    say(c, "auth_reset_required: re-pairing");
    c->have_token = false;
    c->token[0] = '\0';
    if (c->cfg.store.erase(c->cfg.store.ctx) != NXG_OK) {
        say(c, "token store: erase failed");
    }
    /* right after a reset, pairing is the normal next step; a token refused straight after its
     * own pairing is a server-side problem, and that waits like any failure */
    retry(c, !c->fresh_token);
}

static void pair_refused(nxg_client_t *c, const char *why)
{
    c->stats.refused_codes++;
    say(c, "pair refused: %s", why);
    retry(c, false);
}

static void paired(nxg_client_t *c, const nxg_msg_t *msg)
{
    if (c->cfg.serial != NULL && strcmp(msg->serial, c->cfg.serial) != 0) {
        /* the code belongs to another device: this firmware was flashed with the wrong config.h */
        say(c, "pair_ok for serial=%s, expected %s", msg->serial, c->cfg.serial);
        retry(c, false);
        return;
    }
    memcpy(c->serial, msg->serial, strlen(msg->serial) + 1); /* lengths checked by the decoder */
    memcpy(c->token, msg->token, strlen(msg->token) + 1);
    c->have_token = true;
    c->fresh_token = true;
    c->stats.pairings++;
    if (c->cfg.store.save(c->cfg.store.ctx, c->serial, c->token) != NXG_OK) {
        say(c, "token store: save failed (pairing again after a restart)");
    }
    say(c, "paired serial=%s", msg->serial);
    if (c->cfg.transport.wire == NXG_WIRE_GATEWAY) {
        go_online(c); /* pair_ok authenticates the socket */
    } else {
        retry(c, true); /* reconnect as the device, with the token */
    }
}

/* `_ota` is protocol-internal: only the server sends it; it is in no manifest and has no target. */
static const char *run_ota(nxg_client_t *c, const nxg_command_t *cmd)
{
    nxg_ota_request_t request;
    if (!nxg_ota_parse(cmd->params, &request)) {
        return "invalid _ota params";
    }
    if (c->ota_fn == NULL) {
        return "firmware updates are not supported";
    }
    return c->ota_fn(c->cfg.user, &request);
}

static void run_handler(nxg_client_t *c, const nxg_command_t *cmd, nxg_reply_t *reply)
{
    const nxg_handler_t *handler = NULL;
    for (size_t i = 0; i < c->handler_count && handler == NULL; i++) {
        if (strcmp(c->handlers[i].target, cmd->target) == 0) {
            handler = &c->handlers[i];
        }
    }
    if (handler == NULL) {
        reply->error = "unknown target";
        return;
    }
    bool known_action = false;
    for (const char *const *a = handler->actions; a != NULL && *a != NULL; a++) {
        known_action = known_action || strcmp(*a, cmd->action) == 0;
    }
    if (!known_action) {
        reply->error = "unknown action";
    } else {
        handler->fn(c->cfg.user, cmd, reply);
    }
}

static void run_command(nxg_client_t *c, const nxg_command_t *cmd)
{
    c->stats.commands++;
    nxg_reply_t reply = {.error = NULL, .result = NULL};
    if (strcmp(cmd->action, NXG_OTA_ACTION) == 0) {
        reply.error = run_ota(c, cmd);
    } else {
        run_handler(c, cmd, &reply);
    }
    if (reply.result != NULL && !cJSON_IsObject(reply.result)) {
        cJSON_Delete(reply.result);
        reply.result = NULL;
    }
    int len = nxg_msg_encode_ack(c->tx, sizeof(c->tx), cmd->id, reply.error, reply.result);
    if (len == NXG_ERR_TOO_LARGE && reply.result != NULL) {
        /* the command ran: say so, without the result that does not fit */
        len = nxg_msg_encode_ack(c->tx, sizeof(c->tx), cmd->id, reply.error, NULL);
    }
    cJSON_Delete(reply.result);
    int rc = publish(c, device_topic(c, "ack"), len);
    if (reply.error == NULL) {
        say(c, "cmd id=%s action=%s ok", cmd->id, cmd->action);
    } else {
        say(c, "cmd id=%s action=%s failed: %s", cmd->id, cmd->action, reply.error);
    }
    if (rc != NXG_OK) {
        say(c, "ack of %s not sent", cmd->id);
    }
}

/* ---- public API ------------------------------------------------------------------------------ */

nxg_err_t nxg_client_init(nxg_client_t *client, const nxg_config_t *config)
{
    if (client == NULL || config == NULL ||
        (config->serial != NULL && (config->serial[0] == '\0' || strlen(config->serial) >= NXG_MAX_SERIAL_BYTES)) ||
        (config->pair_id != NULL && (config->pair_id[0] == '\0' || strlen(config->pair_id) >= 24)) ||
        config->transport.connect == NULL ||
        config->transport.publish == NULL || config->transport.disconnect == NULL ||
        (config->transport.wire == NXG_WIRE_MQTT && config->transport.subscribe == NULL) || config->store.load == NULL ||
        config->store.save == NULL || config->store.erase == NULL) {
        return NXG_ERR_ARG;
    }
    memset(client, 0, sizeof(*client));
    client->cfg = *config;
    client->state = NXG_STATE_BACKOFF;
    char stored[NXG_MAX_SERIAL_BYTES] = {0};
    nxg_err_t err =
        config->store.load(config->store.ctx, stored, sizeof(stored), client->token, sizeof(client->token));
    /* a token stored for another serial (a reflashed config.h) is of no use to this one */
    client->have_token = err == NXG_OK && client->token[0] != '\0' && stored[0] != '\0' &&
                         (config->serial == NULL || strcmp(stored, config->serial) == 0);
    if (client->have_token) {
        memcpy(client->serial, stored, sizeof(stored));
    } else {
        client->token[0] = '\0';
        if (config->serial != NULL) {
            memcpy(client->serial, config->serial, strlen(config->serial) + 1);
        }
    }
    snprintf(client->pair_id, sizeof(client->pair_id), "pair-%08lx",
             (unsigned long)(config->random != NULL ? config->random(config->user) : 0));
    return NXG_OK;
}

nxg_err_t nxg_client_on_command(nxg_client_t *client, const char *target, const char *const *actions,
                                const char *description, nxg_command_fn fn)
{
    if (client == NULL || target == NULL || actions == NULL || fn == NULL) {
        return NXG_ERR_ARG;
    }
    if (client->handler_count >= NXG_MAX_HANDLERS) {
        return NXG_ERR_FULL;
    }
    client->handlers[client->handler_count++] = (nxg_handler_t){
        .target = target,
        .actions = actions,
        .description = description,
        .fn = fn,
    };
    return NXG_OK;
}

nxg_err_t nxg_client_on_ota(nxg_client_t *client, nxg_ota_fn fn)
{
    if (client == NULL) {
        return NXG_ERR_ARG;
    }
    client->ota_fn = fn;
    return NXG_OK;
}

void nxg_client_tick(nxg_client_t *client, uint64_t now_ms)
{
    client->now_ms = now_ms;
    switch (client->state) {
    case NXG_STATE_BACKOFF:
        if (now_ms >= client->deadline_ms) {
            start_connect(client);
        }
        break;
    case NXG_STATE_PAIR_CONNECTING:
    case NXG_STATE_PAIRING:
    case NXG_STATE_AUTH_CONNECTING:
    case NXG_STATE_AUTHENTICATING:
        if (now_ms >= client->deadline_ms) {
            say(client, "no answer from the server in %lu ms", (unsigned long)NXG_PAIR_TIMEOUT_MS);
            retry(client, false);
        }
        break;
    case NXG_STATE_ONLINE:
        if (client->failures > 0 && now_ms - client->online_since_ms >= NXG_STABLE_MS) {
            client->failures = 0; /* a stable connection: the next outage starts from the minimum */
        }
        break;
    case NXG_STATE_STOPPED:
        break;
    }
}

uint32_t nxg_client_next_tick_ms(const nxg_client_t *client)
{
    switch (client->state) {
    case NXG_STATE_STOPPED:
        return UINT32_MAX;
    case NXG_STATE_ONLINE:
        return 1000;
    default:
        if (client->deadline_ms <= client->now_ms) {
            return 0;
        }
        uint64_t left = client->deadline_ms - client->now_ms;
        return left > 1000 ? 1000 : (uint32_t)left;
    }
}

nxg_err_t nxg_client_send(nxg_client_t *client, nxg_channel_t channel, const cJSON *fields)
{
    if (client == NULL || fields == NULL) {
        return NXG_ERR_ARG;
    }
    if (client->state != NXG_STATE_ONLINE) {
        return NXG_ERR_STATE;
    }
    int len = nxg_msg_encode_data(client->tx, sizeof(client->tx), client->cfg.transport.wire, channel, fields);
    if (len < 0) {
        return (nxg_err_t)len;
    }
    return (nxg_err_t)publish(client, device_topic(client, nxg_channel_name(channel)), len);
}

void nxg_client_stop(nxg_client_t *client)
{
    if (client->state != NXG_STATE_BACKOFF && client->state != NXG_STATE_STOPPED) {
        client->cfg.transport.disconnect(client->cfg.transport.ctx);
    }
    client->state = NXG_STATE_STOPPED;
}

/* ---- transport events ------------------------------------------------------------------------ */

void nxg_client_on_transport_up(nxg_client_t *c)
{
    const nxg_transport_t *t = &c->cfg.transport;
    bool mqtt = t->wire == NXG_WIRE_MQTT;
    if (c->state == NXG_STATE_PAIR_CONNECTING) {
        c->state = NXG_STATE_PAIRING;
        if (mqtt) {
            /* subscribe before the request: the broker handles a session's packets in order */
            snprintf(c->topic, sizeof(c->topic), "nxg/pair/%s", pair_client_id(c));
            if (t->subscribe(t->ctx, c->topic) != 0) {
                retry(c, false);
                return;
            }
            snprintf(c->topic, sizeof(c->topic), "nxg/pair/%s/req", pair_client_id(c));
        }
        if (publish(c, c->topic, nxg_msg_encode_pair(c->tx, sizeof(c->tx), c->cfg.code)) != NXG_OK) {
            retry(c, false);
        }
    } else if (c->state == NXG_STATE_AUTH_CONNECTING) {
        if (mqtt) {
            go_online(c); /* CONNACK 0 is auth_ok */
            return;
        }
        c->state = NXG_STATE_AUTHENTICATING;
        if (publish(c, NULL, nxg_msg_encode_auth(c->tx, sizeof(c->tx), c->token)) != NXG_OK) {
            retry(c, false);
        }
    }
}

void nxg_client_on_transport_refused(nxg_client_t *c, int connack_rc)
{
    if (c->state == NXG_STATE_AUTH_CONNECTING && connack_rc == 5) {
        auth_reset(c);
    } else if (c->state == NXG_STATE_PAIR_CONNECTING && connack_rc == 4) {
        pair_refused(c, "wrong connection code (CONNACK 4)");
    } else if (c->state == NXG_STATE_PAIR_CONNECTING && connack_rc == 3) {
        pair_refused(c, "locked out or unavailable (CONNACK 3)");
    } else if (c->state == NXG_STATE_PAIR_CONNECTING || c->state == NXG_STATE_AUTH_CONNECTING) {
        say(c, "connection refused: CONNACK %d", connack_rc);
        retry(c, false);
    }
}

void nxg_client_on_transport_down(nxg_client_t *c)
{
    switch (c->state) {
    case NXG_STATE_BACKOFF:
    case NXG_STATE_STOPPED:
        return; /* our own disconnect, or a late event */
    case NXG_STATE_ONLINE:
        if (c->now_ms - c->online_since_ms >= NXG_STABLE_MS) {
            c->failures = 0;
        }
        say(c, "disconnected");
        break;
    default:
        say(c, "connection lost in state %s", nxg_state_name(c->state));
        break;
    }
    c->state = NXG_STATE_BACKOFF; /* the transport is down: nothing to disconnect */
    retry(c, false);
}

void nxg_client_on_transport_message(nxg_client_t *c, const char *topic, const char *data, size_t len)
{
    nxg_msg_t msg;
    nxg_err_t err = nxg_msg_decode(data, len, &msg);
    if (err != NXG_OK) {
        c->stats.rx_errors++;
        say(c, "dropped a message: %s", nxg_err_name(err));
        return;
    }
    bool mqtt = c->cfg.transport.wire == NXG_WIRE_MQTT;
    bool on_cmd_topic = !mqtt || (topic != NULL && strcmp(topic, device_topic(c, "cmd")) == 0);
    switch (msg.kind) {
    case NXG_MSG_PAIR_OK:
        if (c->state == NXG_STATE_PAIRING) {
            paired(c, &msg);
        }
        break;
    case NXG_MSG_PAIR_ERROR:
        if (c->state == NXG_STATE_PAIRING) {
            pair_refused(c, msg.error);
        }
        break;
    case NXG_MSG_AUTH_OK:
        if (c->state == NXG_STATE_AUTHENTICATING) {
            go_online(c);
        }
        break;
    case NXG_MSG_AUTH_RESET:
        if (c->state == NXG_STATE_AUTHENTICATING || c->state == NXG_STATE_ONLINE) {
            auth_reset(c);
        }
        break;
    case NXG_MSG_PING:
        if (!mqtt && publish(c, NULL, nxg_msg_encode_pong(c->tx, sizeof(c->tx))) != NXG_OK) {
            say(c, "pong not sent");
        }
        break;
    case NXG_MSG_CMD:
        if (c->state == NXG_STATE_ONLINE && on_cmd_topic) {
            run_command(c, &msg.cmd);
        }
        break;
    case NXG_MSG_ERROR:
        say(c, "server says: %s", msg.error);
        break;
    case NXG_MSG_UNKNOWN:
        break;
    }
    nxg_msg_free(&msg);
}
