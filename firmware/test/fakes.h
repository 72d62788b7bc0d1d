/*
 * Test doubles for the core's unit tests: a transport that records what the core asks of it,
 * and a token store in memory. Header-only: each test program is one translation unit.
 */
#ifndef NXG_TEST_FAKES_H
#define NXG_TEST_FAKES_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "nxg_client.h"

#define FAKE_MAX 32

typedef struct {
    nxg_wire_t wire;
    int connects, disconnects, fail_connect;
    char client_id[80], username[80], password[128];
    char subscribed[FAKE_MAX][96];
    int n_subscribed;
    char topics[FAKE_MAX][96];
    char payloads[FAKE_MAX][NXG_MAX_MESSAGE_BYTES];
    int n_published;
    /* store */
    char serial[NXG_MAX_SERIAL_BYTES], token[NXG_MAX_TOKEN_BYTES];
    int saves, erases;
    /* log */
    char lines[FAKE_MAX][160];
    int n_lines;
    uint32_t random;
} fake_t;

static inline int fake_connect(void *ctx, const char *client_id, const char *username, const char *password)
{
    fake_t *f = ctx;
    f->connects++;
    snprintf(f->client_id, sizeof(f->client_id), "%s", client_id ? client_id : "");
    snprintf(f->username, sizeof(f->username), "%s", username ? username : "");
    snprintf(f->password, sizeof(f->password), "%s", password ? password : "");
    return f->fail_connect ? -1 : 0;
}

static inline int fake_subscribe(void *ctx, const char *topic)
{
    fake_t *f = ctx;
    if (f->n_subscribed < FAKE_MAX) {
        snprintf(f->subscribed[f->n_subscribed++], 96, "%s", topic);
    }
    return 0;
}

static inline int fake_publish(void *ctx, const char *topic, const char *payload, size_t len)
{
    fake_t *f = ctx;
    if (f->n_published < FAKE_MAX) {
        snprintf(f->topics[f->n_published], 96, "%s", topic ? topic : "");
        snprintf(f->payloads[f->n_published], NXG_MAX_MESSAGE_BYTES, "%.*s", (int)len, payload);
        f->n_published++;
    }
    return 0;
}

static inline void fake_disconnect(void *ctx)
{
    ((fake_t *)ctx)->disconnects++;
}

static inline nxg_err_t fake_load(void *ctx, char *serial, size_t serial_len, char *token, size_t token_len)
{
    fake_t *f = ctx;
    if (f->token[0] == '\0') {
        return NXG_ERR_STATE;
    }
    snprintf(serial, serial_len, "%s", f->serial);
    snprintf(token, token_len, "%s", f->token);
    return NXG_OK;
}

static inline nxg_err_t fake_save(void *ctx, const char *serial, const char *token)
{
    fake_t *f = ctx;
    f->saves++;
    snprintf(f->serial, sizeof(f->serial), "%s", serial);
    snprintf(f->token, sizeof(f->token), "%s", token);
    return NXG_OK;
}

static inline nxg_err_t fake_erase(void *ctx)
{
    fake_t *f = ctx;
    f->erases++;
    f->serial[0] = f->token[0] = '\0';
    return NXG_OK;
}

static inline uint32_t fake_random(void *user)
{
    return ((fake_t *)user)->random;
}

static inline void fake_log(void *user, const char *line)
{
    fake_t *f = user;
    if (f->n_lines < FAKE_MAX) {
        snprintf(f->lines[f->n_lines++], 160, "%s", line);
    }
}

static inline nxg_config_t fake_config(fake_t *f, const char *serial, const char *code)
{
    return (nxg_config_t){
        .serial = serial,
        .code = code,
        .pair_id = "pair-test",
        .transport =
            {
                .wire = f->wire,
                .ctx = f,
                .connect = fake_connect,
                .subscribe = fake_subscribe,
                .publish = fake_publish,
                .disconnect = fake_disconnect,
            },
        .store = {.ctx = f, .load = fake_load, .save = fake_save, .erase = fake_erase},
        .random = fake_random,
        .log = fake_log,
        .user = f,
    };
}

static inline const char *last_payload(const fake_t *f)
{
    return f->n_published > 0 ? f->payloads[f->n_published - 1] : "";
}

static inline int logged(const fake_t *f, const char *text)
{
    int n = 0;
    for (int i = 0; i < f->n_lines; i++) {
        n += strstr(f->lines[i], text) != NULL;
    }
    return n;
}

#endif /* NXG_TEST_FAKES_H */
