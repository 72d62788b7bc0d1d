/* nxg_messages.c: see nxg_messages.h. */
#include "nxg_messages.h"

#include <string.h>

#define PRINT_SLACK 5 /* cJSON_PrintPreallocated wants this much room beyond the text */

const char *nxg_channel_name(nxg_channel_t channel)
{
    switch (channel) {
    case NXG_CHANNEL_TELEMETRY:
        return "telemetry";
    case NXG_CHANNEL_STATUS:
        return "status";
    case NXG_CHANNEL_EVENT:
        return "event";
    }
    return "?";
}

/* The string at key, or NULL when absent or not a string. */
static const char *string_at(const cJSON *object, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsString(item) && item->valuestring != NULL ? item->valuestring : NULL;
}

static nxg_err_t decode_cmd(nxg_msg_t *out)
{
    const cJSON *root = out->root;
    out->cmd.id = string_at(root, "id");
    out->cmd.action = string_at(root, "action");
    if (out->cmd.id == NULL || out->cmd.id[0] == '\0' || strlen(out->cmd.id) >= NXG_MAX_ID_BYTES ||
        out->cmd.action == NULL || out->cmd.action[0] == '\0') {
        return NXG_ERR_JSON;
    }
    const cJSON *target = cJSON_GetObjectItemCaseSensitive(root, "target");
    if (target == NULL || cJSON_IsNull(target)) {
        out->cmd.target = "";
    } else if (cJSON_IsString(target)) {
        out->cmd.target = target->valuestring;
    } else {
        return NXG_ERR_JSON;
    }
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "params");
    if (params == NULL || cJSON_IsNull(params)) {
        out->empty_params = cJSON_CreateObject();
        if (out->empty_params == NULL) {
            return NXG_ERR_NO_MEMORY;
        }
        out->cmd.params = out->empty_params;
    } else if (cJSON_IsObject(params)) {
        out->cmd.params = params;
    } else {
        return NXG_ERR_JSON;
    }
    return NXG_OK;
}

nxg_err_t nxg_msg_decode(const char *data, size_t len, nxg_msg_t *out)
{
    if (out == NULL) {
        return NXG_ERR_ARG;
    }
    memset(out, 0, sizeof(*out));
    if (data == NULL) {
        return NXG_ERR_ARG;
    }
    if (len > NXG_MAX_MESSAGE_BYTES) {
        return NXG_ERR_TOO_LARGE;
    }
    out->root = cJSON_ParseWithLength(data, len);
    if (out->root == NULL || !cJSON_IsObject(out->root)) {
        nxg_msg_free(out);
        return NXG_ERR_JSON;
    }
    const char *t = string_at(out->root, "t");
    nxg_err_t err = NXG_OK;
    if (t == NULL) {
        err = NXG_ERR_JSON;
    } else if (strcmp(t, "pair_ok") == 0) {
        out->kind = NXG_MSG_PAIR_OK;
        out->serial = string_at(out->root, "serial");
        out->token = string_at(out->root, "token");
        if (out->serial == NULL || out->serial[0] == '\0' || out->token == NULL || out->token[0] == '\0') {
            err = NXG_ERR_JSON;
        } else if (strlen(out->token) >= NXG_MAX_TOKEN_BYTES || strlen(out->serial) >= NXG_MAX_SERIAL_BYTES) {
            err = NXG_ERR_TOO_LARGE;
        }
    } else if (strcmp(t, "pair_error") == 0) {
        out->kind = NXG_MSG_PAIR_ERROR;
        out->error = string_at(out->root, "error");
        if (out->error == NULL) {
            out->error = "pair_error";
        }
    } else if (strcmp(t, "auth_ok") == 0) {
        out->kind = NXG_MSG_AUTH_OK;
        out->serial = string_at(out->root, "serial");
    } else if (strcmp(t, "auth_reset_required") == 0) {
        out->kind = NXG_MSG_AUTH_RESET;
    } else if (strcmp(t, "ping") == 0) {
        out->kind = NXG_MSG_PING;
    } else if (strcmp(t, "cmd") == 0) {
        out->kind = NXG_MSG_CMD;
        err = decode_cmd(out);
    } else if (strcmp(t, "error") == 0) {
        out->kind = NXG_MSG_ERROR;
        out->error = string_at(out->root, "error");
        if (out->error == NULL) {
            out->error = "error";
        }
    } else {
        out->kind = NXG_MSG_UNKNOWN;
    }
    if (err != NXG_OK) {
        nxg_msg_free(out);
    }
    return err;
}

void nxg_msg_free(nxg_msg_t *msg)
{
    if (msg == NULL) {
        return;
    }
    cJSON_Delete(msg->root);
    cJSON_Delete(msg->empty_params);
    memset(msg, 0, sizeof(*msg));
}

/* Prints `object` (deleted here, whatever happens) into buf. */
static int print_and_delete(cJSON *object, char *buf, size_t len)
{
    if (object == NULL) {
        return NXG_ERR_NO_MEMORY;
    }
    int written = NXG_ERR_TOO_LARGE;
    if (len > PRINT_SLACK && len <= (size_t)INT32_MAX && cJSON_PrintPreallocated(object, buf, (int)len, 0)) {
        size_t n = strlen(buf);
        written = n + PRINT_SLACK <= len ? (int)n : NXG_ERR_TOO_LARGE;
    }
    cJSON_Delete(object);
    return written;
}

/* {"t":t, key:value} for a string value. */
static int encode_pair_of_strings(char *buf, size_t len, const char *t, const char *key, const char *value)
{
    if (buf == NULL || (key != NULL && value == NULL)) {
        return NXG_ERR_ARG;
    }
    cJSON *object = cJSON_CreateObject();
    if (object == NULL) {
        return NXG_ERR_NO_MEMORY;
    }
    bool ok = cJSON_AddStringToObject(object, "t", t) != NULL;
    if (ok && key != NULL) {
        ok = cJSON_AddStringToObject(object, key, value) != NULL;
    }
    if (!ok) {
        cJSON_Delete(object);
        return NXG_ERR_NO_MEMORY;
    }
    return print_and_delete(object, buf, len);
}

int nxg_msg_encode_pair(char *buf, size_t len, const char *code)
{
    return encode_pair_of_strings(buf, len, "pair", "code", code);
}

int nxg_msg_encode_auth(char *buf, size_t len, const char *token)
{
    return encode_pair_of_strings(buf, len, "auth", "token", token);
}

int nxg_msg_encode_pong(char *buf, size_t len)
{
    return encode_pair_of_strings(buf, len, "pong", NULL, NULL);
}

int nxg_msg_encode_ack(char *buf, size_t len, const char *id, const char *error, const cJSON *result)
{
    if (buf == NULL || id == NULL || (result != NULL && !cJSON_IsObject(result))) {
        return NXG_ERR_ARG;
    }
    cJSON *object = cJSON_CreateObject();
    if (object == NULL) {
        return NXG_ERR_NO_MEMORY;
    }
    bool ok = cJSON_AddStringToObject(object, "t", "ack") != NULL && cJSON_AddStringToObject(object, "id", id) != NULL &&
              cJSON_AddBoolToObject(object, "ok", error == NULL) != NULL;
    if (ok && error != NULL) {
        ok = cJSON_AddStringToObject(object, "error", error) != NULL;
    }
    if (ok && result != NULL) {
        /* a reference: printed with the ack, never freed through it */
        ok = cJSON_AddItemReferenceToObject(object, "result", (cJSON *)result);
    }
    if (!ok) {
        cJSON_Delete(object);
        return NXG_ERR_NO_MEMORY;
    }
    return print_and_delete(object, buf, len);
}

int nxg_msg_encode_data(char *buf, size_t len, nxg_wire_t wire, nxg_channel_t channel, const cJSON *fields)
{
    if (buf == NULL || !cJSON_IsObject(fields) || cJSON_GetObjectItemCaseSensitive(fields, "t") != NULL ||
        cJSON_GetObjectItemCaseSensitive(fields, "serial") != NULL) {
        return NXG_ERR_ARG;
    }
    size_t prefix_len = 0;
    if (wire == NXG_WIRE_GATEWAY) {
        /* `{"t":"telemetry",` then the object's members: the object is printed so that its own
         * '{' lands on the prefix's ',' (then put back), which needs no second buffer. */
        const char *name = nxg_channel_name(channel);
        prefix_len = strlen("{\"t\":\"\",") + strlen(name);
        if (prefix_len + PRINT_SLACK + 2 > len) {
            return NXG_ERR_TOO_LARGE;
        }
        buf[0] = '\0';
        strcat(buf, "{\"t\":\"");
        strcat(buf, name);
        strcat(buf, "\",");
    }
    char *at = buf + (prefix_len > 0 ? prefix_len - 1 : 0);
    size_t room = len - (size_t)(at - buf);
    if (room > (size_t)INT32_MAX || !cJSON_PrintPreallocated((cJSON *)fields, at, (int)room, 0)) {
        return NXG_ERR_TOO_LARGE;
    }
    size_t n = strlen(at);
    if (n + PRINT_SLACK > room) {
        return NXG_ERR_TOO_LARGE;
    }
    if (prefix_len == 0) {
        return (int)n;
    }
    if (strcmp(at, "{}") == 0) {
        at[0] = '}';
        at[1] = '\0';
        return (int)prefix_len;
    }
    at[0] = ',';
    return (int)(prefix_len - 1 + n);
}

int nxg_msg_encode_manifest(char *buf, size_t len, const nxg_handler_t *handlers, size_t count)
{
    if (buf == NULL || (handlers == NULL && count > 0)) {
        return NXG_ERR_ARG;
    }
    cJSON *manifest = cJSON_CreateObject();
    cJSON *capabilities = cJSON_AddArrayToObject(manifest, "capabilities");
    if (manifest == NULL || capabilities == NULL || cJSON_AddNumberToObject(manifest, "version", 1) == NULL) {
        cJSON_Delete(manifest);
        return NXG_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < count; i++) {
        for (const char *const *action = handlers[i].actions; action != NULL && *action != NULL; action++) {
            /* each item is attached to the manifest as soon as it exists: one Delete frees all */
            cJSON *capability = cJSON_CreateObject();
            if (capability == NULL || !cJSON_AddItemToArray(capabilities, capability)) {
                cJSON_Delete(capability);
                cJSON_Delete(manifest);
                return NXG_ERR_NO_MEMORY;
            }
            cJSON *targets = cJSON_CreateStringArray(&handlers[i].target, 1);
            if (cJSON_AddStringToObject(capability, "action", *action) == NULL || targets == NULL ||
                !cJSON_AddItemToObject(capability, "targets", targets)) {
                cJSON_Delete(targets);
                cJSON_Delete(manifest);
                return NXG_ERR_NO_MEMORY;
            }
            bool ok = (handlers[i].description == NULL ||
                       cJSON_AddStringToObject(capability, "description", handlers[i].description) != NULL) &&
                      cJSON_AddStringToObject(capability, "safetyClass", "normal") != NULL &&
                      cJSON_AddFalseToObject(capability, "supportsDryRun") != NULL;
            if (!ok) {
                cJSON_Delete(manifest);
                return NXG_ERR_NO_MEMORY;
            }
        }
    }
    return print_and_delete(manifest, buf, len);
}
