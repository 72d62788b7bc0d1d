/* The token store of the host client: one small file instead of NVS. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "host_port.h"

static nxg_err_t load(void *ctx, char *serial, size_t serial_len, char *token, size_t token_len)
{
    FILE *f = fopen((const char *)ctx, "r");
    if (f == NULL) {
        return errno == ENOENT ? NXG_ERR_STATE : NXG_ERR_STORE;
    }
    char line[NXG_MAX_SERIAL_BYTES + NXG_MAX_TOKEN_BYTES + 4] = {0};
    bool read = fgets(line, sizeof(line), f) != NULL;
    if (fclose(f) != 0 || !read) {
        return NXG_ERR_STATE;
    }
    char *space = strchr(line, ' ');
    if (space == NULL) {
        return NXG_ERR_STATE;
    }
    *space = '\0';
    char *tok = space + 1;
    tok[strcspn(tok, "\r\n")] = '\0';
    if (line[0] == '\0' || tok[0] == '\0' || strlen(line) >= serial_len || strlen(tok) >= token_len) {
        return NXG_ERR_STATE;
    }
    memcpy(serial, line, strlen(line) + 1);
    memcpy(token, tok, strlen(tok) + 1);
    return NXG_OK;
}

static nxg_err_t save(void *ctx, const char *serial, const char *token)
{
    const char *path = (const char *)ctx;
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        return NXG_ERR_STORE;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        return NXG_ERR_STORE;
    }
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        return NXG_ERR_STORE;
    }
    bool ok = fprintf(f, "%s %s\n", serial, token) > 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    /* rename() is atomic: a crash leaves the old token or the new one, never half of one */
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return NXG_ERR_STORE;
    }
    return NXG_OK;
}

static nxg_err_t erase(void *ctx)
{
    return unlink((const char *)ctx) == 0 || errno == ENOENT ? NXG_OK : NXG_ERR_STORE;
}

nxg_store_t host_store_file(const char *path)
{
    return (nxg_store_t){.ctx = (void *)path, .load = load, .save = save, .erase = erase};
}
