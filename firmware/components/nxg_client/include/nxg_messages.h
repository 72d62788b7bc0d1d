/*
 * nxg_messages: JSON encode/decode of every device message (PROTOCOL.md §2-3), with cJSON.
 *
 * Decoding never trusts the server: anything malformed, too large, or missing a required field
 * is NXG_ERR_JSON / NXG_ERR_TOO_LARGE, never a crash. Encoders write into a caller's buffer and
 * return the length written (without the NUL) or a negative nxg_err_t when it does not fit.
 */
#ifndef NXG_MESSAGES_H
#define NXG_MESSAGES_H

#include <stdbool.h>
#include <stddef.h>

#include "cJSON.h"
#include "nxg_client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    NXG_MSG_UNKNOWN = 0, /* valid JSON object with a "t" this device does not handle */
    NXG_MSG_PAIR_OK,     /* serial, token */
    NXG_MSG_PAIR_ERROR,  /* error */
    NXG_MSG_AUTH_OK,     /* serial */
    NXG_MSG_AUTH_RESET,  /* auth_reset_required */
    NXG_MSG_PING,
    NXG_MSG_CMD, /* cmd */
    NXG_MSG_ERROR, /* error: the gateway's complaint about something we sent */
} nxg_msg_kind_t;

/*
 * A decoded message. Its strings point into `root`, which the message owns:
 * call nxg_msg_free() once done (also after an error: it is safe on a zeroed message).
 */
typedef struct {
    nxg_msg_kind_t kind;
    const char *serial;
    const char *token;
    const char *error;
    nxg_command_t cmd;
    cJSON *root;
    cJSON *empty_params; /* {} for a command sent without params; owned here too */
} nxg_msg_t;

nxg_err_t nxg_msg_decode(const char *data, size_t len, nxg_msg_t *out);
void nxg_msg_free(nxg_msg_t *msg);

/* {"t":"pair","code":C} (both wires; the MQTT session is bound by its CONNECT already). */
int nxg_msg_encode_pair(char *buf, size_t len, const char *code);
/* {"t":"auth","token":T} (gateway). */
int nxg_msg_encode_auth(char *buf, size_t len, const char *token);
/* {"t":"pong"} (gateway). */
int nxg_msg_encode_pong(char *buf, size_t len);
/* {"t":"ack","id","ok","error"?,"result"?}; result is borrowed. */
int nxg_msg_encode_ack(char *buf, size_t len, const char *id, const char *error, const cJSON *result);
/*
 * A reading, status or event. MQTT: the object as is. Gateway: the same fields after
 * "t":"telemetry"|"status"|"event". `fields` (borrowed) must be an object without "t"/"serial".
 */
int nxg_msg_encode_data(char *buf, size_t len, nxg_wire_t wire, nxg_channel_t channel, const cJSON *fields);
/* {"version":1,"capabilities":[{"action","targets":[target],"description"?,...}]} */
int nxg_msg_encode_manifest(char *buf, size_t len, const nxg_handler_t *handlers, size_t count);

const char *nxg_channel_name(nxg_channel_t channel);

#ifdef __cplusplus
}
#endif

#endif /* NXG_MESSAGES_H */
