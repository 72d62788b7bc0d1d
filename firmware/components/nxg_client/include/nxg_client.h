/*
 * nxg_client: the portable core of an NXG device (PROTOCOL.md §1-3, §6).
 *
 * Pair with the connection code, keep the token, authenticate with it, send telemetry, status
 * and events, run commands through registered handlers and acknowledge them, publish the
 * manifest on connect, reconnect with bounded exponential backoff and jitter, and pair again
 * by itself when the server answers auth_reset_required (CONNACK 0x05).
 *
 * The core makes no ESP-IDF or POSIX call. A port gives it:
 *   - a transport (nxg_transport.h): MQTT (esp-mqtt, libmosquitto) or the /ws/gateway socket;
 *   - a token store (nxg_store_t below): NVS on the ESP32, a file on the host;
 *   - the time (nxg_client_tick), a random source, and a log sink.
 *
 * Threading: the core is not thread-safe. Every call into it (the nxg_client_* functions and
 * the nxg_client_on_* transport events) must be serialised by the port: on the host everything
 * runs in one loop; on the ESP32 a mutex guards the client.
 *
 * Memory: nxg_client_t holds every buffer (sizes below are compile-time settings); the core
 * keeps nothing on the heap between calls. cJSON allocates a message's tree while it is being
 * encoded or decoded (bounded: incoming messages larger than NXG_MAX_MESSAGE_BYTES are refused
 * before parsing) and frees it before the call returns.
 */
#ifndef NXG_CLIENT_H
#define NXG_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cJSON.h"
#include "nxg_ota.h"
#include "nxg_transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- compile-time settings (override with -D or Kconfig) ------------------------------------ */
#ifndef NXG_MAX_MESSAGE_BYTES
#define NXG_MAX_MESSAGE_BYTES 1024 /* one encoded message, in or out */
#endif
#ifndef NXG_MAX_TOKEN_BYTES
#define NXG_MAX_TOKEN_BYTES 96 /* nxgt_ + 43 base64url chars today; room to grow */
#endif
#ifndef NXG_MAX_HANDLERS
#define NXG_MAX_HANDLERS 8
#endif
#ifndef NXG_BACKOFF_MIN_MS
#define NXG_BACKOFF_MIN_MS 1000u
#endif
#ifndef NXG_BACKOFF_MAX_MS
#define NXG_BACKOFF_MAX_MS 60000u
#endif
#ifndef NXG_STABLE_MS
#define NXG_STABLE_MS 30000u /* online this long: the next failure starts again at the minimum */
#endif
#ifndef NXG_PAIR_TIMEOUT_MS
#define NXG_PAIR_TIMEOUT_MS 15000u /* no pair_ok / auth_ok / CONNACK in this time: drop and back off */
#endif

#define NXG_MAX_SERIAL_BYTES 65 /* ^[A-Za-z0-9_-]{1,64}$ and its NUL */
#define NXG_MAX_CODE_BYTES 16   /* XXXX-XXXX */
#define NXG_MAX_ID_BYTES 64     /* a command id */

/* ---- errors ---------------------------------------------------------------------------------- */
typedef enum {
    NXG_OK = 0,
    NXG_ERR_ARG = -1,       /* a NULL or out-of-range argument */
    NXG_ERR_STATE = -2,     /* not possible in this state (e.g. send while offline) */
    NXG_ERR_TOO_LARGE = -3, /* does not fit NXG_MAX_MESSAGE_BYTES (or the token buffer) */
    NXG_ERR_JSON = -4,      /* malformed JSON or a message without its required fields */
    NXG_ERR_NO_MEMORY = -5, /* cJSON could not allocate a message's tree */
    NXG_ERR_TRANSPORT = -6, /* the transport refused the call */
    NXG_ERR_STORE = -7,     /* the token store failed */
    NXG_ERR_FULL = -8,      /* no free handler slot */
} nxg_err_t;

const char *nxg_err_name(nxg_err_t err);

/* ---- token storage --------------------------------------------------------------------------- */
/*
 * The token is the device's only secret; it is stored with the serial it belongs to (a host
 * client learns its serial from pair_ok; an ESP32 has it in config.h too). load() copies both
 * into the buffers (NUL-terminated) and returns NXG_OK, or NXG_ERR_STATE when none is stored;
 * save() and erase() return NXG_OK or NXG_ERR_STORE. The store owns its medium; the core only
 * borrows `ctx`.
 */
typedef struct {
    void *ctx;
    nxg_err_t (*load)(void *ctx, char *serial, size_t serial_len, char *token, size_t token_len);
    nxg_err_t (*save)(void *ctx, const char *serial, const char *token);
    nxg_err_t (*erase)(void *ctx);
} nxg_store_t;

/* ---- states ---------------------------------------------------------------------------------- */
typedef enum {
    NXG_STATE_BACKOFF = 0,    /* waiting to (re)connect; the first tick connects at once */
    NXG_STATE_PAIR_CONNECTING, /* transport opening with the pairing credentials */
    NXG_STATE_PAIRING,         /* pair request sent, waiting for pair_ok */
    NXG_STATE_AUTH_CONNECTING, /* transport opening with serial + token */
    NXG_STATE_AUTHENTICATING,  /* gateway only: auth sent, waiting for auth_ok */
    NXG_STATE_ONLINE,
    NXG_STATE_STOPPED, /* nxg_client_stop(), or nothing to connect with (no token and no code) */
} nxg_state_t;

const char *nxg_state_name(nxg_state_t state);

/* ---- commands -------------------------------------------------------------------------------- */
typedef struct {
    const char *id;
    const char *target; /* "" when the command has none */
    const char *action;
    const cJSON *params; /* an object (empty when the command had none); borrowed for the call */
} nxg_command_t;

/*
 * What a handler fills in. Leave `error` NULL for success; set it (a string that outlives the
 * call, e.g. a literal) for ok:false. `result` may be set to a cJSON object the handler created:
 * the core takes ownership, sends it as the ack's "result" and deletes it.
 */
typedef struct {
    const char *error;
    cJSON *result;
} nxg_reply_t;

typedef void (*nxg_command_fn)(void *user, const nxg_command_t *cmd, nxg_reply_t *reply);

/*
 * The firmware update `_ota` (nxg_ota.h): called with the checked params, borrowed for the call
 * (copy what you keep). Return NULL to accept (the ack says ok: the port then downloads and
 * reports ota_* events), or a reason (a string that outlives the call) to refuse it (ok:false).
 * Keep it quick: start the download from the port's loop, not from here.
 */
#define NXG_OTA_ACTION "_ota"
typedef const char *(*nxg_ota_fn)(void *user, const nxg_ota_request_t *request);

/* ---- configuration --------------------------------------------------------------------------- */
typedef struct {
    const char *serial;   /* NXG_DEVICE_SERIAL, or NULL: learnt from pair_ok and stored with the token */
    const char *code;     /* NXG_CONNECTION_CODE, or NULL: never pair (use the stored token only) */
    const char *pair_id;  /* MQTT pairing client id (any valid topic level); NULL = "pair-" + random hex */
    nxg_transport_t transport;
    nxg_store_t store;
    uint32_t (*random)(void *user); /* jitter source (esp_random(), or a host PRNG) */
    void (*log)(void *user, const char *line); /* one line per transition, no trailing newline */
    void *user;                                /* passed to random, log and the handlers */
} nxg_config_t;

/* ---- the client ------------------------------------------------------------------------------ */
typedef struct {
    const char *target;
    const char *const *actions; /* NULL-terminated; borrowed */
    const char *description;
    nxg_command_fn fn;
} nxg_handler_t;

typedef struct {
    uint32_t attempts;      /* connection attempts started */
    uint32_t pairings;      /* successful pairings */
    uint32_t refused_codes; /* pair attempts refused (wrong code, locked out) */
    uint32_t auth_resets;   /* auth_reset_required seen */
    uint32_t commands;      /* commands received (well-formed) */
    uint32_t rx_errors;     /* incoming messages dropped as malformed or too large */
    uint32_t tx_errors;     /* outgoing messages the transport refused */
} nxg_stats_t;

typedef struct {
    nxg_config_t cfg;
    nxg_state_t state;
    uint64_t now_ms;
    uint64_t deadline_ms;     /* BACKOFF: when to connect; *_CONNECTING/PAIRING/AUTH...: timeout */
    uint64_t online_since_ms;
    uint32_t failures;        /* consecutive failures: the backoff exponent */
    bool fresh_token;         /* paired in this cycle: a 0x05 now is a failure, not a reset */
    bool have_token;
    char serial[NXG_MAX_SERIAL_BYTES]; /* config.h's, or the one pair_ok named */
    char pair_id[24];
    char token[NXG_MAX_TOKEN_BYTES];
    char topic[NXG_MAX_SERIAL_BYTES + 24];
    char tx[NXG_MAX_MESSAGE_BYTES];
    char line[160];
    nxg_handler_t handlers[NXG_MAX_HANDLERS];
    size_t handler_count;
    nxg_ota_fn ota_fn; /* NULL: `_ota` is acked ok:false */
    nxg_stats_t stats;
} nxg_client_t;

/* Prepares the client (no I/O): loads the token if one is stored. The first tick connects. */
nxg_err_t nxg_client_init(nxg_client_t *client, const nxg_config_t *config);

/*
 * Registers a command handler for `target` (e.g. "turn1") and its `actions` (e.g. {"open",
 * "close", NULL}); both are borrowed and listed in the manifest published on every connect.
 * Commands for an unknown target or action are acked ok:false without calling anything.
 */
nxg_err_t nxg_client_on_command(nxg_client_t *client, const char *target, const char *const *actions,
                                const char *description, nxg_command_fn fn);

/* Handles `_ota` with `fn` (NULL: refuse firmware updates). */
nxg_err_t nxg_client_on_ota(nxg_client_t *client, nxg_ota_fn fn);

/* Drives timers: connects when a backoff ends, drops a pairing that takes too long. */
void nxg_client_tick(nxg_client_t *client, uint64_t now_ms);

/* Milliseconds until the next tick matters (for a port's poll timeout); 0 = now. */
uint32_t nxg_client_next_tick_ms(const nxg_client_t *client);

/*
 * Sends `fields` (a JSON object, borrowed) as telemetry, status or an event. Only when online:
 * else NXG_ERR_STATE (nothing is queued: the port decides whether a reading is worth keeping).
 */
nxg_err_t nxg_client_send(nxg_client_t *client, nxg_channel_t channel, const cJSON *fields);

/* Disconnects cleanly and stops reconnecting. */
void nxg_client_stop(nxg_client_t *client);

/* ---- transport events: the port calls these from its transport callbacks --------------------- */
/* MQTT: CONNACK 0. Gateway: the socket is open. */
void nxg_client_on_transport_up(nxg_client_t *client);
/* MQTT only: CONNACK with a non-zero return code (0x04 wrong code, 0x05 not authorised, ...). */
void nxg_client_on_transport_refused(nxg_client_t *client, int connack_rc);
/* The connection is gone (or could not be opened). */
void nxg_client_on_transport_down(nxg_client_t *client);
/* One message: MQTT topic + payload, or a gateway text frame (topic NULL). Borrowed. */
void nxg_client_on_transport_message(nxg_client_t *client, const char *topic, const char *data, size_t len);

/* ---- pieces exposed for the unit tests and for ports ----------------------------------------- */
/* The delay before connection attempt number `failures` (1 = the first retry): exponential from
 * NXG_BACKOFF_MIN_MS, capped at NXG_BACKOFF_MAX_MS, with "equal jitter" (half fixed, half random). */
uint32_t nxg_backoff_ms(uint32_t failures, uint32_t random_value);

#ifdef __cplusplus
}
#endif

#endif /* NXG_CLIENT_H */
