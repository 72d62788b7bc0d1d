/*
 * NXG plugin for Mosquitto 2 (plugin API v5): Mosquitto asks the NXG core, the core decides.
 *
 * This file holds no NXG rule. Every decision is an HTTP call to the core's internal hook listener
 * (nxg_mqtt/hooks/http.py, EMQX 5's authn/authz shapes), over one kept-alive connection:
 *
 *   MOSQ_EVT_BASIC_AUTH  -> first the credential table (below): a user name the core listed,
 *                           with its client id and a password whose SHA-256 is the listed hash,
 *                           is allowed with the listed ACL rules and no call; the connection is
 *                           reported on connected_topic without waiting. The same user name and
 *                           client id with another password is refused (0x05) without a call,
 *                           reported on refused_topic, unless a snapshot is under way: the core
 *                           puts a device's new hash here before anyone holds its token (the
 *                           ordering guarantee, nxg_mqtt/hooks/credentials.py). Then the core's own
 *                           lockout answers (0x03 until a time it named, per user name and
 *                           address, see "lockout refusals"): refused without a call. Then the
 *                           core's 0x05 to this exact login (user name, client id, password
 *                           hash), kept until that user's login changes (see "refused
 *                           passwords"): refused without a call, reported on refused_topic. Else ->
 *                           POST /mqtt/auth with `conn` (this connection's name): allowed, it
 *                           is also the connection event (the broker waits for every call: one
 *                           per CONNECT, not two; Mosquitto 2.0 has no connect event)
 *                           and bounded by auth_budget_ms of waiting per second (past it: 0x03
 *                           without a call, see "the blocking-call budget")
 *   MOSQ_EVT_ACL_CHECK   -> POST /mqtt/acl (publish / subscribe / receive); positive answers for
 *                           publish and receive are cached for acl_cache_s; a device's login
 *                           answer lists its own topics (EMQX's authn `acl`), cached at once, so
 *                           its first publish and its subscriptions ask nothing; a subscription
 *                           allowed that way is reported on subscribed_topic (the core learns
 *                           from it that a device is ready for its queued commands)
 *                           and a listed device whose rules the core marked complete (`!`) is
 *                           denied anything else without a call (its rules are all it may use)
 *   MOSQ_EVT_DISCONNECT  -> a message on disconnected_topic (presence), without waiting; with
 *                           disconnected_topic empty: POST /mqtt/disconnected
 *   MOSQ_EVT_MESSAGE     -> a JSON object published on one of stamp_topics gets the receive time
 *                           appended as `"<stamp_key>":<ms since the epoch>`, so the store, the
 *                           bridge and every subscriber carry one time (PROTOCOL section 6); one
 *                           device's stamps never repeat, and its connect and disconnect reports
 *                           carry a stamp of the same clock (`"ts"`: see "device stamps");
 *                           a message on kick_topic (only the core's `bridge` login may publish
 *                           there, the ACL says so) names a client id: it is kicked at once
 *                           (mosquitto_kick_client_by_clientid), the ACL cache is dropped and so
 *                           is that client's credential entry; a message on credentials_topic
 *                           (the same rule: only the core) changes the credential table.
 *
 * The credential table: the core's own allow answers, filled ahead of time, so that a known
 * device's CONNECT does not stop the broker's one thread for a round trip (Mosquitto 2.0's basic
 * auth is synchronous). The plugin holds hashes only, never a password. The core sends, on
 * credentials_topic, lines of text (one message may hold many):
 *   begin <gen>                    a full snapshot starts (the core's link has just connected)
 *   put@<gen> <user> <clientid> <sha256 hex> <rule>;<rule>...   a snapshot's entry; rule:
 *                                  p:<topic> | s:<topic>, `%u` in a topic stands for the user
 *                                  name (Mosquitto's acl_file pattern); p allows publishing, s
 *                                  subscribing and receiving
 *                                  a last rule `!` says the list is complete: every topic
 *                                  that login may publish or subscribe to is in it
 *   put <user> <clientid> <sha256 hex> <rules>   a delta: this user's entry is now this
 *   del <user>                     no longer allowed (reset, regenerate, delete, revoke, rotate)
 *   end <gen>                      the snapshot is complete: every entry it did not name goes
 * A `del` while a snapshot is under way leaves a dead entry that the snapshot's own `put` of that
 * user cannot bring back (the snapshot was read before the change), and a `put` from a delta
 * outranks the snapshot's. Lines of another generation than the latest `begin` are ignored.
 * While the core's link is down nothing changes here (like kicks); the snapshot sent when it is
 * back replaces the whole table. Bounded: credentials_max entries (the table has twice as many
 * slots, 64 B each; rule lists are shared between users with the same pattern); a `put` beyond
 * it is dropped, that user is simply asked about.
 *
 * Why the core publishes kicks instead of the plugin polling for them: the broker runs plugin
 * callbacks on its one thread, so a kick must happen on that thread; a message event is on it,
 * arrives within milliseconds of the core's decision, and costs nothing while nothing happens.
 *
 * CONNACK codes. Mosquitto 2.0 answers every refusal from a basic-auth plugin with 0x05. PROTOCOL
 * section 2 needs 0x04 for a wrong pairing code, 0x03 for a locked-out address and 0x02 for a bad
 * pairing client id. With exact_connack on, for an MQTT 3.1.1 client on a plain TCP listener, the
 * plugin writes that CONNACK itself to the client's socket and returns an error that makes the
 * broker close the connection without a CONNACK of its own. The socket is found in the broker's
 * client struct (Mosquitto 2.0 built with epoll, as Debian's: `int ident; int sock;` first) and
 * used only after checking both: ident is the broker's client tag and the socket's peer address
 * is the client's. Otherwise (WebSocket listeners, MQTT 5, another layout) the answer is 0x05.
 * If the hooks are unreachable the client gets 0x03 (try later), never 0x05: 0x05 would make
 * firmware erase its token.
 *
 * Options (mosquitto.conf):
 *   plugin_opt_url            http://127.0.0.1:8090   the hook listener (plain HTTP, IPv4)
 *   plugin_opt_secret         ...                     the core's internal secret (Bearer)
 *   plugin_opt_timeout_ms     2000                    per hook call
 *   plugin_opt_acl_cache_s    60                      positive ACL answers kept at most this long
 *   plugin_opt_acl_cache_entries 65536                how many (8-way set-associative, LRU per set,
 *                                                     ~280 B each; acl_cache.h)
 *   plugin_opt_kick_topic     $nxg/kick
 *   plugin_opt_subscribed_topic $nxg/subscribed         subscriptions allowed from a login's rules
 *   plugin_opt_exact_connack  true
 *   plugin_opt_stamp_topics   nxg/+/telemetry nxg/+/status nxg/+/event nxg/+/ack
 *   plugin_opt_stamp_key      server_ts
 *   plugin_opt_credentials_topic $nxg/credentials    the credential table's feed ("" : off)
 *   plugin_opt_credentials_max 100000                 entries at most
 *   plugin_opt_connected_topic $nxg/connected         logins allowed from the table, reported
 *   plugin_opt_disconnected_topic $nxg/disconnected   disconnects, reported ("" : POST instead)
 *   plugin_opt_refused_topic  $nxg/refused            logins refused from the refused passwords
 *   plugin_opt_core_username  bridge                  the only login whose kick/credential
 *                                                     messages are taken (the ACL says the same)
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "acl_cache.h"

#define BODY_MAX 8192
#define RESP_MAX 4096
#define CACHE_KEY_MAX ACL_CACHE_KEY_MAX
#define CLIENT_TAG_EPOLL 2 /* enum struct_ident's id_client in Mosquitto 2.0 */
#define SUPERUSERS_MAX 64

static mosquitto_plugin_id_t *plugin_id;
static char hook_host[64] = "127.0.0.1";
static int hook_port = 8090;
static char auth_header[512];
static int timeout_ms = 2000;
static int acl_cache_s = 60;
static size_t acl_cache_size = 65536;
static char kick_topic[128] = "$nxg/kick";
static char subscribed_topic[128] = "$nxg/subscribed";
static bool exact_connack = true;
static char stamp_topics[512] = "";
static char stamp_key[64] = "server_ts";
static int hook_fd = -1;
/* connections the hooks called superusers (`is_superuser`, EMQX's meaning: no ACL check): the
 * core's own logins. Remembered per connection (the broker's client struct) while it is open, so
 * the broker does not ask about every message they receive. Not by client id: when the core's
 * link is kicked and logs in again under the same id, the old connection's disconnect comes after
 * the new login and must not clear the new connection's status. The client id and user name are
 * kept beside the struct and checked too: a struct freed without a disconnect event and reused
 * for another client must not inherit the status. */
struct superuser {
	const struct mosquitto *client; /* NULL: free */
	char client_id[128];
	char username[128];
};
static struct superuser superusers[SUPERUSERS_MAX];
static struct acl_cache cache; /* acl_cache.h: LRU per set, a fixed size */

/* ---- HTTP to the hooks ------------------------------------------------------------------------ */

static void hook_close(void)
{
	if(hook_fd >= 0){
		close(hook_fd);
		hook_fd = -1;
	}
}

static int hook_connect(void)
{
	struct sockaddr_in addr;
	struct timeval tv;
	int one = 1;

	hook_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if(hook_fd < 0) return -1;
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	setsockopt(hook_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(hook_fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(hook_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)hook_port);
	if(inet_pton(AF_INET, hook_host, &addr.sin_addr) != 1 || connect(hook_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0){
		hook_close();
		return -1;
	}
	return 0;
}

static int send_all(const char *data, size_t len)
{
	while(len > 0){
		ssize_t n = send(hook_fd, data, len, MSG_NOSIGNAL);
		if(n <= 0){
			if(n < 0 && errno == EINTR) continue;
			return -1;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One request on the kept-alive connection; the body of the answer goes to `out`.
 * Returns the HTTP status, or -1 if the hooks could not be reached or answered garbage. */
static int hook_once(const char *path, const char *body, size_t body_len, char *out, size_t out_cap)
{
	char head[1024];
	char resp[RESP_MAX + 1];
	size_t have = 0;
	char *end = NULL;
	int status;
	long content_length = -1;
	bool close_after = false;
	int n;

	if(hook_fd < 0 && hook_connect() < 0) return -1;
	n = snprintf(head, sizeof(head),
			"POST %s HTTP/1.1\r\nHost: nxg-hooks\r\n%sContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
			path, auth_header, body_len);
	if(n < 0 || (size_t)n >= sizeof(head)) return -1;
	if(send_all(head, (size_t)n) < 0 || send_all(body, body_len) < 0) return -1;

	while(end == NULL){
		ssize_t got;
		if(have >= RESP_MAX) return -1;
		got = recv(hook_fd, resp + have, RESP_MAX - have, 0);
		if(got <= 0){
			if(got < 0 && errno == EINTR) continue;
			return -1;
		}
		have += (size_t)got;
		resp[have] = '\0';
		end = strstr(resp, "\r\n\r\n");
	}
	if(sscanf(resp, "HTTP/1.%*d %d", &status) != 1) return -1;
	for(char *line = strstr(resp, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n")){
		if(!strncasecmp(line + 2, "content-length:", 15)){
			content_length = strtol(line + 17, NULL, 10);
		}else if(!strncasecmp(line + 2, "connection: close", 17)){
			close_after = true;
		}
	}
	if(content_length < 0 || (size_t)content_length >= out_cap) return -1;
	{
		size_t body_have = have - (size_t)(end + 4 - resp);
		memcpy(out, end + 4, body_have < (size_t)content_length ? body_have : (size_t)content_length);
		while(body_have < (size_t)content_length){
			ssize_t got = recv(hook_fd, out + body_have, (size_t)content_length - body_have, 0);
			if(got <= 0){
				if(got < 0 && errno == EINTR) continue;
				return -1;
			}
			body_have += (size_t)got;
		}
		out[content_length] = '\0';
	}
	if(close_after) hook_close();
	return status;
}

/* What the hooks cost the broker's one thread (every call blocks it): per path, calls and time,
 * logged every STATS_EVERY_S while calls are made (`nxg: hooks ...`, notice level). */
#define STATS_EVERY_S 10
enum hook_path { HP_AUTH, HP_ACL, HP_DISCONNECTED, HP_COUNT };
static const char *const hook_path_names[HP_COUNT] = {"auth", "acl", "disconnected"};
static struct { unsigned long calls; double total_ms, max_ms; } hook_stats[HP_COUNT];
static time_t stats_since;
static unsigned long creds_hits; /* logins allowed from the credential table, logged with these */
static unsigned long refusals_hits; /* logins refused from the core's lockout answers (below) */
static unsigned long denials_hits; /* logins refused from the core's refused passwords (below) */
static unsigned long creds_refused; /* logins refused from the credential table (another password) */
static unsigned long acl_asked[3]; /* publish, receive, subscribe: which checks missed the cache */
static unsigned long acl_denied_locally; /* denied from a complete credential entry, no call */

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void stats_flush(time_t now);

/* The blocking-call budget. Mosquitto 2.0 waits for every /mqtt/auth answer on its only thread,
 * and a login the plugin cannot answer itself (pairing, API keys, the core's link, an unknown user
 * name or password) costs one call: a flood of such CONNECTs (random user names from many
 * addresses get past every per-address lockout) would stall every device on the broker. So the
 * time this thread may spend waiting for /mqtt/auth is a token bucket of auth_budget_ms per
 * second (as large as one second's worth), past the first auth_free_calls calls of each second
 * (so that a short burst is never refused because a loaded machine made its calls slow): when it
 * is spent, a login that would need a call is
 * refused with 0x03 (server unavailable: firmware retries later and keeps its token) without one.
 * A call that takes longer than what is left leaves the bucket at most one second's worth behind,
 * so the thread waits at most the budget plus one call per second, and a slow answer does not lock
 * logins out for longer than a second. Devices the credential table answers never call, so they
 * are never refused by it. 0: no bound. */
static double auth_budget_ms = 250;
static unsigned auth_free_calls = 32; /* calls a second admitted whatever the bucket holds */
static double auth_window_at; /* the current one-second window of free calls */
static unsigned auth_window_calls;
static double auth_bucket_ms;
static double auth_bucket_at; /* 0: not started (the bucket starts full) */
static unsigned long budget_refused; /* logins refused because the budget was spent */
static char core_secret[401]; /* plugin_opt_secret: the core's own link logs in with it */

static bool auth_budget_left(double now)
{
	if(auth_budget_ms <= 0) return true;
	if(now - auth_window_at >= 1000.0){
		auth_window_at = now;
		auth_window_calls = 0;
	}
	if(auth_bucket_at == 0){
		auth_bucket_ms = auth_budget_ms;
	}else{
		auth_bucket_ms += (now - auth_bucket_at) * auth_budget_ms / 1000.0;
		if(auth_bucket_ms > auth_budget_ms) auth_bucket_ms = auth_budget_ms;
	}
	auth_bucket_at = now;
	/* the first calls of every second go through even when slow calls spent the bucket: a burst
	 * of a few dozen logins on a loaded machine (API-key clients reconnecting) is not a flood */
	if(auth_window_calls < auth_free_calls || auth_bucket_ms > 0){
		auth_window_calls++;
		return true;
	}
	return false;
}

/* A call that began at `started` has ended: its time comes out of the bucket, which a call longer
 * than what was left leaves at most one second's worth behind. */
static void auth_budget_spend(double started)
{
	if(auth_budget_ms <= 0) return;
	auth_bucket_ms -= now_ms() - started;
	if(auth_bucket_ms < -auth_budget_ms) auth_bucket_ms = -auth_budget_ms;
}

static void stats_note(const char *path, double ms)
{
	int i = !strcmp(path, "/mqtt/auth") ? HP_AUTH : !strcmp(path, "/mqtt/acl") ? HP_ACL : HP_DISCONNECTED;
	time_t now = time(NULL);
	hook_stats[i].calls++;
	hook_stats[i].total_ms += ms;
	if(ms > hook_stats[i].max_ms) hook_stats[i].max_ms = ms;
	if(stats_since == 0) stats_since = now;
	if(now - stats_since < STATS_EVERY_S) return;
	stats_flush(now);
}

/* The figures since the last flush, logged (also at shutdown: the last ones are not lost). */
static void stats_flush(time_t now)
{
	for(int k = 0; k < HP_COUNT; k++){
		if(hook_stats[k].calls == 0) continue;
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "nxg: hooks %s: %lu calls in %lds, mean %.2f ms, max %.1f ms",
				hook_path_names[k], hook_stats[k].calls, (long)(now - stats_since),
				hook_stats[k].total_ms / (double)hook_stats[k].calls, hook_stats[k].max_ms);
	}
	if(creds_refused){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "nxg: logins refused from the credential table: %lu in %lds",
				creds_refused, (long)(now - stats_since));
		creds_refused = 0;
	}
	if(denials_hits){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "nxg: logins refused from the core's refused passwords: %lu in %lds",
				denials_hits, (long)(now - stats_since));
		denials_hits = 0;
	}
	if(refusals_hits){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "nxg: logins refused from the core's lockout answers: %lu in %lds",
				refusals_hits, (long)(now - stats_since));
		refusals_hits = 0;
	}
	if(budget_refused){
		mosquitto_log_printf(MOSQ_LOG_WARNING,
				"nxg: %lu logins refused with 0x03 in %lds: the time for blocking auth calls "
				"(plugin_opt_auth_budget_ms %.0f per second) was spent (a flood of unknown logins?)",
				budget_refused, (long)(now - stats_since), auth_budget_ms);
		budget_refused = 0;
	}
	if(creds_hits){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "nxg: logins from the credential table: %lu in %lds", creds_hits,
				(long)(now - stats_since));
		creds_hits = 0;
	}
	if(acl_denied_locally){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "nxg: topic checks of listed devices denied from their rules: %lu in %lds",
				acl_denied_locally, (long)(now - stats_since));
		acl_denied_locally = 0;
	}
	if(hook_stats[HP_ACL].calls){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "nxg: hooks acl asked: publish %lu, receive %lu, subscribe %lu",
				acl_asked[0], acl_asked[1], acl_asked[2]);
	}
	memset(hook_stats, 0, sizeof(hook_stats));
	memset(acl_asked, 0, sizeof(acl_asked));
	stats_since = now;
}

/* A kept-alive connection may have been closed by the other side meanwhile: one retry. */
static int hook_call(const char *path, const char *body, size_t body_len, char *out, size_t out_cap)
{
	double started = now_ms();
	int status = hook_once(path, body, body_len, out, out_cap);
	if(status < 0){
		hook_close();
		status = hook_once(path, body, body_len, out, out_cap);
		if(status < 0){
			hook_close();
			mosquitto_log_printf(MOSQ_LOG_WARNING, "nxg: hook %s unreachable at %s:%d", path, hook_host, hook_port);
		}
	}
	stats_note(path, now_ms() - started);
	return status;
}

/* ---- JSON bodies ------------------------------------------------------------------------------ */

struct buf {
	char data[BODY_MAX];
	size_t len;
	bool overflow;
};

static void put(struct buf *b, const char *s, size_t n)
{
	if(b->len + n >= sizeof(b->data)){
		b->overflow = true;
		return;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

/* `"name":"value",` with the value escaped as a JSON string; NULL becomes null. */
static void put_field(struct buf *b, const char *name, const char *value)
{
	char esc[8];
	if(b->len > 1) put(b, ",", 1);
	put(b, "\"", 1);
	put(b, name, strlen(name));
	put(b, "\":", 2);
	if(value == NULL){
		put(b, "null", 4);
		return;
	}
	put(b, "\"", 1);
	for(const unsigned char *p = (const unsigned char *)value; *p; p++){
		if(*p == '"' || *p == '\\'){
			esc[0] = '\\';
			esc[1] = (char)*p;
			put(b, esc, 2);
		}else if(*p < 0x20){
			snprintf(esc, sizeof(esc), "\\u%04x", *p);
			put(b, esc, 6);
		}else{
			put(b, (const char *)p, 1);
		}
	}
	put(b, "\"", 1);
}

static bool answer_is(const char *answer, const char *result)
{
	char want[32];
	snprintf(want, sizeof(want), "\"result\":\"%s\"", result);
	return strstr(answer, want) != NULL;
}

/* ---- CONNACK codes ---------------------------------------------------------------------------- */

/* The client's socket, if the broker's struct is laid out as checked above; else -1. */
static int client_socket(struct mosquitto *client)
{
	const int *head = (const int *)client;
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);
	char text[INET6_ADDRSTRLEN];
	const char *address = mosquitto_client_address(client);
	int type;
	socklen_t type_len = sizeof(type);

	if(head[0] != CLIENT_TAG_EPOLL || head[1] < 0 || address == NULL) return -1;
	if(getsockopt(head[1], SOL_SOCKET, SO_TYPE, &type, &type_len) < 0 || type != SOCK_STREAM) return -1;
	if(getpeername(head[1], (struct sockaddr *)&peer, &len) < 0) return -1;
	if(peer.ss_family == AF_INET){
		inet_ntop(AF_INET, &((struct sockaddr_in *)&peer)->sin_addr, text, sizeof(text));
	}else if(peer.ss_family == AF_INET6){
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&peer)->sin6_addr, text, sizeof(text));
	}else{
		return -1;
	}
	return strcmp(text, address) == 0 ? head[1] : -1;
}

/* Refuse with `code`: 0x05 the broker's way; any other code written by us where possible. */
static int refuse(struct mosquitto *client, int code)
{
	int fd;
	unsigned char connack[4] = {0x20, 0x02, 0x00, 0x00};

	if(code == 5 || !exact_connack) return code == 3 ? MOSQ_ERR_UNKNOWN : MOSQ_ERR_AUTH;
	if(mosquitto_client_protocol(client) != mp_mqtt || mosquitto_client_protocol_version(client) != 4){
		return code == 3 ? MOSQ_ERR_UNKNOWN : MOSQ_ERR_AUTH;
	}
	fd = client_socket(client);
	if(fd < 0) return code == 3 ? MOSQ_ERR_UNKNOWN : MOSQ_ERR_AUTH;
	connack[3] = (unsigned char)code;
	if(send(fd, connack, sizeof(connack), MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)sizeof(connack)){
		return MOSQ_ERR_AUTH;
	}
	return MOSQ_ERR_UNKNOWN; /* the broker closes the connection and sends nothing more */
}

/* ---- superusers -------------------------------------------------------------------------------- */

static bool superuser_is(const struct mosquitto *client)
{
	const char *client_id = mosquitto_client_id(client);
	const char *username = mosquitto_client_username(client);
	if(client_id == NULL || username == NULL) return false;
	for(int i = 0; i < SUPERUSERS_MAX; i++){
		if(superusers[i].client == client){
			return !strcmp(superusers[i].client_id, client_id) && !strcmp(superusers[i].username, username);
		}
	}
	return false;
}

/* This connection is (`on`) or is no longer a superuser; other connections of the same client id
 * are not touched. */
static void superuser_set(const struct mosquitto *client, const char *client_id, const char *username, bool on)
{
	for(int i = 0; i < SUPERUSERS_MAX; i++){
		if(superusers[i].client == client) superusers[i].client = NULL;
	}
	if(!on || client_id == NULL || username == NULL) return;
	if(strlen(client_id) >= sizeof(superusers[0].client_id) || strlen(username) >= sizeof(superusers[0].username)) return;
	for(int i = 0; i < SUPERUSERS_MAX; i++){
		if(superusers[i].client == NULL){
			superusers[i].client = client;
			snprintf(superusers[i].client_id, sizeof(superusers[i].client_id), "%s", client_id);
			snprintf(superusers[i].username, sizeof(superusers[i].username), "%s", username);
			return;
		}
	}
	/* full: that connection is simply asked about like any other */
}

#define fnv1a nxg_fnv1a

/* ---- the credential table (see the top of this file) ------------------------------------------ */

static void refusals_clear(void); /* the lockout refusals, below */
static void denials_forget(const char *username); /* the refused passwords, below */
static void denials_clear(void);

#define RULES_DISTINCT_MAX 256 /* distinct rule lists kept; with `%u` every device shares one */

enum cred_state { CRED_FREE = 0, CRED_USED, CRED_GONE /* deleted: probing goes on past it */ };

struct cred {
	char *username; /* malloc'd */
	char *client_id; /* == username when they are equal (the usual device), else malloc'd */
	const char *rules; /* interned: "p:topic;s:topic" */
	unsigned char hash[32]; /* SHA-256 of the password */
	uint32_t gen; /* the snapshot it belongs to */
	uint8_t state;
	bool from_delta; /* put or deleted by a delta during snapshot `gen`: the snapshot cannot undo it */
	bool dead; /* deleted during a snapshot: refuses to be brought back by it, allows nothing */
	bool complete; /* its rules are everything the login may use: anything else is denied, no call */
};

static char credentials_topic[128] = "$nxg/credentials";
static char connected_topic[128] = "$nxg/connected";
static char disconnected_topic[128] = "$nxg/disconnected";
static char core_username[64] = "bridge";
static size_t credentials_max = 100000;
static struct cred *creds;
static size_t creds_slots; /* a power of two, >= 2 x credentials_max */
static size_t creds_used, creds_gone;
static uint32_t snap_gen;
static bool snapping;
static char *rules_interned[RULES_DISTINCT_MAX];

static const char *rules_intern(const char *rules)
{
	for(int i = 0; i < RULES_DISTINCT_MAX; i++){
		if(rules_interned[i] == NULL){
			rules_interned[i] = mosquitto_strdup(rules);
			return rules_interned[i];
		}
		if(!strcmp(rules_interned[i], rules)) return rules_interned[i];
	}
	return NULL; /* that many patterns: not kept, the user is asked about */
}

static struct cred *cred_slot(const char *username, bool for_insert)
{
	size_t mask = creds_slots - 1;
	size_t i = (size_t)fnv1a(username) & mask;
	struct cred *first_gone = NULL;
	for(size_t probes = 0; probes < creds_slots; probes++, i = (i + 1) & mask){
		struct cred *c = &creds[i];
		if(c->state == CRED_FREE) return for_insert ? (first_gone ? first_gone : c) : NULL;
		if(c->state == CRED_GONE){
			if(first_gone == NULL) first_gone = c;
			continue;
		}
		if(!strcmp(c->username, username)) return c;
	}
	return for_insert ? first_gone : NULL;
}

static void cred_free(struct cred *c)
{
	if(c->client_id != c->username) mosquitto_free(c->client_id);
	mosquitto_free(c->username);
	c->username = c->client_id = NULL;
	c->rules = NULL;
	c->state = CRED_GONE;
	creds_used--;
	creds_gone++;
}

/* Gone slots lengthen every probe: once they are a quarter of the table, it is built again. */
static void creds_rebuild(void)
{
	struct cred *old = creds;
	creds = mosquitto_calloc(creds_slots, sizeof(*creds));
	if(creds == NULL){
		creds = old;
		return;
	}
	creds_gone = 0;
	for(size_t i = 0; i < creds_slots; i++){
		if(old[i].state == CRED_USED) *cred_slot(old[i].username, true) = old[i];
	}
	mosquitto_free(old);
}

static int hex_nibble(char c)
{
	if(c >= '0' && c <= '9') return c - '0';
	if(c >= 'a' && c <= 'f') return c - 'a' + 10;
	if(c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

static void cred_del(const char *username);

/* A rule list ending in `!` (alone, or after `;`) holds every topic the login may use: the marker
 * is cut off and true returned. */
static bool rules_complete(char *rules)
{
	size_t len = rules ? strlen(rules) : 0;
	if(len == 0 || rules[len - 1] != '!') return false;
	if(len == 1){
		rules[0] = '\0';
		return true;
	}
	if(rules[len - 2] != ';') return false;
	rules[len - 2] = '\0';
	return true;
}

/* `put <user> <clientid> <hash> <rules>`; `delta`: not part of a snapshot. */
static void cred_put(char *line, bool delta, uint32_t gen)
{
	char *save = NULL;
	char *username = strtok_r(line, " ", &save);
	char *client_id = strtok_r(NULL, " ", &save);
	char *hex = strtok_r(NULL, " ", &save);
	char *rules = strtok_r(NULL, " ", &save);
	unsigned char hash[32];
	struct cred *c;

	if(username == NULL) return;
	if(delta) denials_forget(username); /* this user's login changed: nothing refused stands */
	if(!delta && (!snapping || gen != snap_gen)) return; /* an older snapshot's chunk */
	if(client_id == NULL || hex == NULL || strlen(hex) != 64){
		if(delta) cred_del(username); /* a change not understood: the old entry must not refuse */
		return;
	}
	for(int i = 0; i < 32; i++){
		int hi = hex_nibble(hex[2 * i]), lo = hex_nibble(hex[2 * i + 1]);
		if(hi < 0 || lo < 0){
			if(delta) cred_del(username);
			return;
		}
		hash[i] = (unsigned char)(hi << 4 | lo);
	}
	c = cred_slot(username, true);
	if(c == NULL){
		if(delta) cred_del(username);
		return;
	}
	if(c->state == CRED_USED){
		if(!delta && c->from_delta && c->gen == snap_gen) return; /* read before that change */
		if(c->client_id != c->username) mosquitto_free(c->client_id);
		c->client_id = c->username;
	}else{
		if(creds_used >= credentials_max) return;
		c->username = mosquitto_strdup(username);
		if(c->username == NULL) return;
		c->client_id = c->username;
		if(c->state == CRED_GONE) creds_gone--;
		c->state = CRED_USED;
		creds_used++;
	}
	if(strcmp(client_id, username)){
		c->client_id = mosquitto_strdup(client_id);
		if(c->client_id == NULL){
			cred_free(c);
			return;
		}
	}
	memcpy(c->hash, hash, sizeof(hash));
	c->complete = rules_complete(rules);
	c->rules = rules ? rules_intern(rules) : "";
	c->gen = snapping ? snap_gen : 0;
	c->from_delta = delta;
	c->dead = c->rules == NULL; /* its rules could not be kept: ask about it */
}

/* `del <user>`, a delta, or a kick of that client id. */
static void cred_del(const char *username)
{
	struct cred *c;
	denials_forget(username);
	c = creds ? cred_slot(username, false) : NULL;
	if(c == NULL) return;
	if(snapping){
		/* the snapshot under way may still name it, read before this change */
		c->dead = true;
		c->from_delta = true;
		c->gen = snap_gen;
		return;
	}
	cred_free(c);
	if(creds_gone > creds_slots / 4) creds_rebuild();
}

static void creds_end(uint32_t gen)
{
	if(!snapping || gen != snap_gen) return;
	snapping = false;
	for(size_t i = 0; i < creds_slots; i++){
		struct cred *c = &creds[i];
		if(c->state == CRED_USED && (c->dead || c->gen != gen)) cred_free(c);
	}
	if(creds_gone > creds_slots / 4) creds_rebuild();
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "nxg: credential table: %zu entries (snapshot %u)", creds_used, gen);
}

static void creds_feed(const char *payload, uint32_t len)
{
	char *text = mosquitto_malloc((size_t)len + 1);
	char *save = NULL;
	if(text == NULL || creds == NULL){
		mosquitto_free(text);
		return;
	}
	memcpy(text, payload, len);
	text[len] = '\0';
	for(char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)){
		if(!strncmp(line, "put ", 4)){
			cred_put(line + 4, true, 0); /* a delta */
		}else if(!strncmp(line, "put@", 4)){
			/* `put@<gen> ...`: a snapshot's line */
			char *rest = NULL;
			unsigned long gen = strtoul(line + 4, &rest, 10);
			if(rest && *rest == ' ') cred_put(rest + 1, false, (uint32_t)gen);
		}else if(!strncmp(line, "del ", 4)){
			cred_del(line + 4);
		}else if(!strncmp(line, "begin ", 6)){
			snap_gen = (uint32_t)strtoul(line + 6, NULL, 10);
			snapping = true;
			refusals_clear(); /* the core's link (re)connected: it may have restarted, without lockouts */
			denials_clear(); /* and its store may have changed meanwhile without a delta */
		}else if(!strncmp(line, "end ", 4)){
			creds_end((uint32_t)strtoul(line + 4, NULL, 10));
		}
	}
	mosquitto_free(text);
}

/* What the table says of this CONNECT: CRED_ALLOW (`*entry` lets it in), CRED_REFUSE (a listed
 * device, its client id, another password: the core would answer 0x05; only while no snapshot is
 * under way, see the ordering guarantee in nxg_mqtt/hooks/credentials.py), CRED_ASK (anything else). */
enum cred_verdict { CRED_ASK, CRED_ALLOW, CRED_REFUSE };

static enum cred_verdict cred_match(const char *username, const char *client_id, const char *password,
		const struct cred **entry)
{
	unsigned char digest[32];
	unsigned int digest_len = 0;
	const struct cred *c;

	if(creds == NULL || username == NULL || client_id == NULL || password == NULL) return CRED_ASK;
	c = cred_slot(username, false);
	if(c == NULL || c->dead || strcmp(c->client_id, client_id)) return CRED_ASK;
	if(!EVP_Digest(password, strlen(password), digest, &digest_len, EVP_sha256(), NULL) || digest_len != 32) return CRED_ASK;
	if(CRYPTO_memcmp(digest, c->hash, sizeof(digest)) == 0){
		*entry = c;
		return CRED_ALLOW;
	}
	return snapping ? CRED_ASK : CRED_REFUSE;
}

/* Device stamps: they never repeat for one device (the topic's {S}), as the core's DeviceClock
 * (nxg_mqtt/models.py): history pages on a ts (`before`, `next_before`), so two messages of one
 * device in one millisecond could be split by a page boundary. A message in the millisecond of its
 * device's last one gets the next millisecond. Only devices stamped at or past the newest stamp
 * given are remembered: the table is emptied (a new generation) whenever the clock passes every
 * stamp in it, so it holds at most the devices of one busy millisecond. Full (a burst of more
 * devices than that), a stamp is the plain time: a tie is then paged whole by the core. */
#define STAMP_SLOTS 4096
#define STAMP_SERIAL_MAX 64

struct stamp_slot {
	unsigned long long generation;
	long long last;
	char serial[STAMP_SERIAL_MAX];
};

static struct stamp_slot stamp_table[STAMP_SLOTS];
static unsigned long long stamp_generation = 1;
static unsigned stamp_used;
static long long stamp_newest; /* the newest stamp given */

static long long realtime_ms(void)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* The stamp of something of device `serial` (its first `len` characters) happening now. */
static long long serial_stamp(const char *serial, size_t len)
{
	long long now = realtime_ms();
	uint64_t hash = 1469598103934665603ULL; /* FNV-1a */

	if(now > stamp_newest){
		stamp_generation++;
		stamp_used = 0;
		stamp_newest = now;
	}
	if(len == 0 || len >= STAMP_SERIAL_MAX) return now;
	for(size_t i = 0; i < len; i++){
		hash ^= (unsigned char)tolower((unsigned char)serial[i]);
		hash *= 1099511628211ULL;
	}
	for(unsigned probe = 0; probe < STAMP_SLOTS; probe++){
		struct stamp_slot *slot = &stamp_table[(hash + probe) % STAMP_SLOTS];
		if(slot->generation != stamp_generation){
			if(stamp_used >= STAMP_SLOTS / 2) return now;
			slot->generation = stamp_generation;
			slot->last = now;
			memcpy(slot->serial, serial, len);
			slot->serial[len] = '\0';
			stamp_used++;
			return now;
		}
		if(!strncasecmp(slot->serial, serial, len) && slot->serial[len] == '\0'){
			slot->last = slot->last < now ? now : slot->last + 1;
			if(slot->last > stamp_newest) stamp_newest = slot->last;
			return slot->last;
		}
	}
	return now;
}

/* The stamp of a message on `nxg/{S}/...`: {S}'s. */
static long long device_stamp(const char *topic)
{
	const char *serial = strchr(topic, '/');
	const char *end;

	if(serial == NULL) return realtime_ms();
	serial++;
	end = strchr(serial, '/');
	return serial_stamp(serial, end ? (size_t)(end - serial) : strlen(serial));
}

/* What happened without a call, told to the core without waiting: a message only the core's
 * `bridge` logins receive (`$` topics match no wildcard; the ACL refuses them to everyone else).
 * A connect or disconnect told to the core afterwards. `ts`: when, stamped as the device's messages
 * are (a device logs in under its serial), so history lists `device_online` before anything the
 * device sends on that connection and `device_offline` after it, although the core handles the
 * report later than the plugin stamps those messages. */
static void report(const char *topic, const char *username, const char *client_id, const char *peerhost, const char *conn)
{
	struct buf b = {.data = "{", .len = 1};
	char ts[32];
	int n = snprintf(ts, sizeof(ts), ",\"ts\":%lld", username ? serial_stamp(username, strlen(username)) : realtime_ms());
	put_field(&b, "username", username);
	put_field(&b, "clientid", client_id);
	if(peerhost) put_field(&b, "peerhost", peerhost);
	put_field(&b, "conn", conn);
	if(n > 0 && (size_t)n < sizeof(ts)) put(&b, ts, (size_t)n);
	put(&b, "}", 1);
	if(b.overflow || mosquitto_broker_publish_copy(NULL, topic, (int)b.len, b.data, 1, false, NULL) != MOSQ_ERR_SUCCESS){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "nxg: %s of %s was not reported", topic, client_id);
	}
}

/* ---- lockout refusals ------------------------------------------------------------------------- */

/* The core's own 0x03 answers to locked-out logins, kept until the end it named
 * (`"retry_after_s"`): every login of that user name from that address is refused until then,
 * whatever its password (PROTOCOL section 6: wrong pairing codes lock pairing from an address;
 * wrong bridge secrets or API keys lock that role from it). So a storm of wrong pairing codes
 * costs one hook call per address, not one per CONNECT on the broker's one thread. Keyed by user
 * name and address: a device logs in under its serial, which no lockout names, so a valid token
 * from a locked-out address is never refused here. Nothing else is kept: no rule of the plugin's
 * own. Bounded (REFUSAL_SETS x REFUSAL_WAYS); a full set drops the entry ending first (that
 * login is asked about again). Dropped whole when the core's link sends a new credential
 * snapshot: a restarted core has no lockouts. */
#define REFUSAL_SETS 256
#define REFUSAL_WAYS 4
#define REFUSAL_KEY_MAX 192

struct refusal {
	uint64_t hash;
	double until_ms; /* CLOCK_MONOTONIC; 0: free */
	char key[REFUSAL_KEY_MAX]; /* user name \x1f address */
};

static struct refusal refusals[REFUSAL_SETS][REFUSAL_WAYS];

static int refusal_key(char *key, const char *username, const char *address)
{
	int n;
	if(username == NULL || address == NULL) return -1;
	n = snprintf(key, REFUSAL_KEY_MAX, "%s\x1f%s", username, address);
	return n > 0 && n < REFUSAL_KEY_MAX ? 0 : -1;
}

/* Whether the core said that this login is refused (0x03) until later than now. */
static bool refusal_held(const char *username, const char *address)
{
	char key[REFUSAL_KEY_MAX];
	uint64_t hash;
	double now = now_ms();
	if(refusal_key(key, username, address) < 0) return false;
	hash = fnv1a(key);
	for(int i = 0; i < REFUSAL_WAYS; i++){
		struct refusal *r = &refusals[hash % REFUSAL_SETS][i];
		if(r->until_ms > now && r->hash == hash && !strcmp(r->key, key)) return true;
	}
	return false;
}

static void refusal_keep(const char *username, const char *address, double seconds)
{
	char key[REFUSAL_KEY_MAX];
	uint64_t hash;
	struct refusal *set, *pick = NULL;
	double now = now_ms();
	if(!(seconds > 0) || refusal_key(key, username, address) < 0) return;
	if(seconds > 86400) seconds = 86400; /* a garbled answer must not lock anyone out for long */
	hash = fnv1a(key);
	set = refusals[hash % REFUSAL_SETS];
	for(int i = 0; i < REFUSAL_WAYS; i++){
		struct refusal *r = &set[i];
		if(r->until_ms > now && r->hash == hash && !strcmp(r->key, key)){
			pick = r;
			break;
		}
		if(pick == NULL || r->until_ms < pick->until_ms) pick = r;
	}
	pick->hash = hash;
	pick->until_ms = now + seconds * 1000.0;
	memcpy(pick->key, key, sizeof(pick->key));
}

static void refusals_clear(void)
{
	memset(refusals, 0, sizeof(refusals));
}

/* ---- refused passwords ------------------------------------------------------------------------ */

/* The core's 0x05 to one exact login (user name, client id, password), kept when its answer says
 * so (`"password_refused_s"`: the core sends it for a device login refused for a wrong or stale
 * token, an unknown serial or a revoked device), so the same wrong password again costs no call on
 * the broker's one thread (the credential table refuses listed devices' wrong passwords itself;
 * this covers the unlisted ones). Only the SHA-256 of the password is kept. Why this never refuses
 * a valid token (HookService.password_refused_s): the core draws tokens at random and commits
 * their hashes before anyone holds them, so a refused password was not that user's token when it
 * was refused; besides, every change of that user's login (a `put`/`del` delta, a kick) drops its
 * entries here, a new snapshot drops them all, and each is kept at most password_refused_s (the
 * core's number). PROTOCOL section 6: wrong tokens count towards no lockout, so nothing here
 * refuses any other password. Reported on refused_topic without waiting (the core counts it).
 * Bounded: DENIAL_SETS x DENIAL_WAYS, a set chosen by the user name (so a delta clears one set);
 * a full set drops the entry ending first. */
#define DENIAL_SETS 1024
#define DENIAL_WAYS 4
#define DENIAL_NAME_MAX 128

struct denial {
	double until_ms; /* CLOCK_MONOTONIC; 0: free */
	unsigned char digest[32]; /* SHA-256 of the password */
	char username[DENIAL_NAME_MAX];
	char client_id[DENIAL_NAME_MAX];
};

static struct denial denials[DENIAL_SETS][DENIAL_WAYS];
static char refused_topic[128] = "$nxg/refused";

static bool password_digest(const char *password, unsigned char digest[32])
{
	unsigned int len = 0;
	return password != NULL && EVP_Digest(password, strlen(password), digest, &len, EVP_sha256(), NULL) && len == 32;
}

static bool denial_fits(const char *username, const char *client_id)
{
	return username != NULL && client_id != NULL && strlen(username) < DENIAL_NAME_MAX
			&& strlen(client_id) < DENIAL_NAME_MAX;
}

/* Whether the core refused exactly this login (0x05) and nothing has changed that user since. */
static bool denial_held(const char *username, const char *client_id, const char *password)
{
	unsigned char digest[32];
	struct denial *set;
	double now = now_ms();
	if(!denial_fits(username, client_id) || !password_digest(password, digest)) return false;
	set = denials[fnv1a(username) % DENIAL_SETS];
	for(int i = 0; i < DENIAL_WAYS; i++){
		struct denial *d = &set[i];
		if(d->until_ms > now && CRYPTO_memcmp(d->digest, digest, sizeof(digest)) == 0
				&& !strcmp(d->username, username) && !strcmp(d->client_id, client_id)){
			return true;
		}
	}
	return false;
}

static void denial_keep(const char *username, const char *client_id, const char *password, double seconds)
{
	unsigned char digest[32];
	struct denial *set, *pick = NULL;
	double now = now_ms();
	if(!(seconds > 0) || !denial_fits(username, client_id) || !password_digest(password, digest)) return;
	if(seconds > 3600) seconds = 3600; /* a garbled answer must not keep a refusal for long */
	set = denials[fnv1a(username) % DENIAL_SETS];
	for(int i = 0; i < DENIAL_WAYS; i++){
		if(pick == NULL || set[i].until_ms < pick->until_ms) pick = &set[i];
	}
	pick->until_ms = now + seconds * 1000.0;
	memcpy(pick->digest, digest, sizeof(digest));
	snprintf(pick->username, sizeof(pick->username), "%s", username);
	snprintf(pick->client_id, sizeof(pick->client_id), "%s", client_id);
}

/* That user's login changed (a credential delta or a kick): whatever was refused may not be now. */
static void denials_forget(const char *username)
{
	struct denial *set = denials[fnv1a(username) % DENIAL_SETS];
	for(int i = 0; i < DENIAL_WAYS; i++){
		if(!strcmp(set[i].username, username)) memset(&set[i], 0, sizeof(set[i]));
	}
}

static void denials_clear(void)
{
	memset(denials, 0, sizeof(denials));
}

/* ---- events ----------------------------------------------------------------------------------- */

static void prefill(const char *username, const char *client_id, const char *answer);
static void prefill_rules(const char *username, const char *client_id, const char *rules);

/* The core's own link (its user name and the internal secret) is never refused by the budget: a
 * flood must not keep the serving process from reconnecting. Anyone else using that user name
 * with another password is budgeted like every other asked login. */
static bool core_login(const char *username, const char *password)
{
	size_t len = password ? strlen(password) : 0;
	return username != NULL && password != NULL && !strcmp(username, core_username) && core_secret[0]
			&& len == strlen(core_secret) && CRYPTO_memcmp(password, core_secret, len) == 0;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	struct buf b = {.data = "{", .len = 1};
	char answer[RESP_MAX];
	char conn[32];
	const char *reason, *retry;
	int status, code = 5;
	double started;
	const struct cred *known = NULL;
	enum cred_verdict verdict;
	(void)event;
	(void)userdata;

	snprintf(conn, sizeof(conn), "%p", (void *)ed->client);
	verdict = cred_match(ed->username, mosquitto_client_id(ed->client), ed->password, &known);
	if(verdict == CRED_ALLOW){
		/* the core's answer, given ahead of time: no call; the core hears of it afterwards */
		creds_hits++;
		superuser_set(ed->client, NULL, NULL, false);
		prefill_rules(ed->username, mosquitto_client_id(ed->client), known->rules);
		report(connected_topic, ed->username, mosquitto_client_id(ed->client), mosquitto_client_address(ed->client), conn);
		return MOSQ_ERR_SUCCESS;
	}
	if(verdict == CRED_REFUSE){
		/* a listed device with another password: the core holds this device's current token hash
		 * here before anyone holds that token, so it would refuse too (0x05); no call, reported */
		creds_refused++;
		report(refused_topic, ed->username, mosquitto_client_id(ed->client), mosquitto_client_address(ed->client), conn);
		return refuse(ed->client, 5);
	}
	if(refusal_held(ed->username, mosquitto_client_address(ed->client))){
		/* the core's own answer to this user name from this address, still in force: no call */
		refusals_hits++;
		return refuse(ed->client, 3);
	}
	if(denial_held(ed->username, mosquitto_client_id(ed->client), ed->password)){
		/* the core refused exactly this login and nothing changed since: the same answer, no call;
		 * the core hears of it afterwards, as it counts the refusals it makes */
		denials_hits++;
		report(refused_topic, ed->username, mosquitto_client_id(ed->client), mosquitto_client_address(ed->client), conn);
		return refuse(ed->client, 5);
	}
	started = now_ms();
	if(!core_login(ed->username, ed->password) && !auth_budget_left(started)){
		budget_refused++;
		return refuse(ed->client, 3);
	}
	put_field(&b, "username", ed->username);
	put_field(&b, "password", ed->password);
	put_field(&b, "clientid", mosquitto_client_id(ed->client));
	put_field(&b, "peerhost", mosquitto_client_address(ed->client));
	put_field(&b, "conn", conn);
	put(&b, "}", 1);
	if(b.overflow) return refuse(ed->client, 5);
	status = hook_call("/mqtt/auth", b.data, b.len, answer, sizeof(answer));
	auth_budget_spend(started);
	if(status < 0 || status >= 500) return refuse(ed->client, 3);
	if(status != 200) return refuse(ed->client, 5);
	if(!answer_is(answer, "allow")){
		reason = strstr(answer, "\"reason_code\":");
		if(reason) code = atoi(reason + 14);
		if(code < 1 || code > 5) code = 5;
		if(code == 3 && (retry = strstr(answer, "\"retry_after_s\":")) != NULL){
			refusal_keep(ed->username, mosquitto_client_address(ed->client), strtod(retry + 16, NULL));
		}
		if(code == 5 && (retry = strstr(answer, "\"password_refused_s\":")) != NULL){
			denial_keep(ed->username, mosquitto_client_id(ed->client), ed->password, strtod(retry + 21, NULL));
		}
		return refuse(ed->client, code);
	}
	superuser_set(ed->client, mosquitto_client_id(ed->client), ed->username, strstr(answer, "\"is_superuser\":true") != NULL);
	prefill(ed->username, mosquitto_client_id(ed->client), answer);
	return MOSQ_ERR_SUCCESS;
}

static int cache_key(char *key, const char *username, const char *client_id, const char *topic, const char *action)
{
	int n = snprintf(key, CACHE_KEY_MAX, "%s\x1f%s\x1f%s\x1f%s", username ? username : "", client_id ? client_id : "",
			topic, action);
	return n > 0 && n < CACHE_KEY_MAX ? 0 : -1;
}

/* A subscription allowed from the login's rules, told to the core without waiting for it: an
 * internal message that only the core's `bridge` logins can receive (`$` topics match no
 * wildcard; the ACL refuses it to everyone else). Queued, so it is delivered after this check
 * returns and the broker has added the subscription. */
static void report_subscribed(const char *username, const char *client_id, const char *topic)
{
	struct buf b = {.data = "{", .len = 1};
	put_field(&b, "username", username);
	put_field(&b, "clientid", client_id);
	put_field(&b, "topic", topic);
	put(&b, "}", 1);
	if(b.overflow || mosquitto_broker_publish_copy(NULL, subscribed_topic, (int)b.len, b.data, 1, false, NULL) != MOSQ_ERR_SUCCESS){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "nxg: the subscription of %s to %s was not reported", client_id, topic);
	}
}

/* One allow rule as cache entries: publish; or subscribe and receive (a subscription allowed from
 * it is reported on subscribed_topic). */
static void cache_rule(const char *username, const char *client_id, const char *action, const char *topic, time_t now)
{
	const char *as_list[2] = {NULL, NULL};
	char key[CACHE_KEY_MAX];
	if(!strcmp(action, "publish")){
		as_list[0] = "publish";
	}else if(!strcmp(action, "subscribe")){
		as_list[0] = "subscribe";
		as_list[1] = "receive";
	}
	for(int i = 0; i < 2; i++){
		const char *as = as_list[i];
		struct acl_cache_slot *slot = NULL;
		uint64_t hash;
		if(as == NULL || cache_key(key, username, client_id, topic, as) < 0) continue;
		hash = fnv1a(key);
		if(acl_cache_find(&cache, hash, key, now, &slot) == NULL && slot != NULL){
			acl_cache_put(&cache, slot, key, hash, now, acl_cache_s, !strcmp(as, "subscribe"));
		}
	}
}

/* The login's answer may carry EMQX 5's authn `acl` rules: the core's decisions on the device's
 * own topics (`{"permission":"allow","action":"publish"|"subscribe","topic":"..."}`, the core
 * writes them in that order, compact). Each becomes a cache entry, so the device's first publish
 * and its subscriptions need no blocking call; a `subscribe` rule allows receiving too, and a
 * subscription allowed from it is reported on subscribed_topic (the core sends queued commands). */
static void prefill(const char *username, const char *client_id, const char *answer)
{
	const char *p = strstr(answer, "\"acl\":[");
	const char *end = p ? strchr(p, ']') : NULL;
	time_t now = time(NULL);

	if(acl_cache_s <= 0 || p == NULL || end == NULL) return;
	while((p = strstr(p, "\"action\":\"")) != NULL && p < end){
		char action[16], topic[CACHE_KEY_MAX];
		const char *t;
		size_t alen, tlen;
		p += 10;
		alen = strcspn(p, "\"");
		t = strstr(p, "\"topic\":\"");
		if(t == NULL || t > end || alen >= sizeof(action)) return;
		t += 9;
		tlen = strcspn(t, "\"\\");
		if(t[tlen] != '"' || tlen == 0 || tlen >= sizeof(topic)) return; /* escapes: not taken */
		memcpy(action, p, alen);
		action[alen] = '\0';
		memcpy(topic, t, tlen);
		topic[tlen] = '\0';
		p = t + tlen;
		cache_rule(username, client_id, action, topic, now);
	}
}

/* The rule at `rule` (its first `len` characters, `p:topic` or `s:topic`) with `%u` replaced by the
 * user name, into `topic` (`cap` bytes): its kind, 'p' or 's', or 0 when it is no rule or does not
 * fit. */
static char rule_topic(const char *rule, size_t len, const char *username, char *topic, size_t cap)
{
	size_t out = 0, ulen = strlen(username);
	if(len <= 2 || rule[1] != ':' || (rule[0] != 'p' && rule[0] != 's')) return 0;
	for(size_t i = 2; i < len; i++){
		if(rule[i] == '%' && i + 1 < len && rule[i + 1] == 'u'){
			if(out + ulen >= cap) return 0;
			memcpy(topic + out, username, ulen);
			out += ulen;
			i++;
		}else{
			if(out + 1 >= cap) return 0;
			topic[out++] = rule[i];
		}
	}
	topic[out] = '\0';
	return rule[0];
}

/* A credential entry's rules (`p:topic;s:topic`, `%u` the user name), into the ACL cache. */
static void prefill_rules(const char *username, const char *client_id, const char *rules)
{
	time_t now = time(NULL);
	if(acl_cache_s <= 0) return;
	while(*rules){
		char topic[CACHE_KEY_MAX];
		size_t len = strcspn(rules, ";");
		char kind = rule_topic(rules, len, username, topic, sizeof(topic));
		if(kind) cache_rule(username, client_id, kind == 'p' ? "publish" : "subscribe", topic, now);
		rules += len;
		if(*rules == ';') rules++;
	}
}

/* Whether a rule of `kind` ('p' publish, 's' subscribe and receive) in `rules` (`p:topic;s:topic`,
 * `%u` the user name) names exactly `topic`. */
static bool rules_allow(const char *rules, const char *username, const char *topic, char kind)
{
	while(*rules){
		char named[CACHE_KEY_MAX];
		size_t len = strcspn(rules, ";");
		if(rule_topic(rules, len, username, named, sizeof(named)) == kind && !strcmp(named, topic)) return true;
		rules += len;
		if(*rules == ';') rules++;
	}
	return false;
}

/* The credential entry of a device logged in as `username` with `client_id`, when its rules are
 * complete (the core marked them so: a device may use its own topics that it lists, nothing else). */
static const struct cred *complete_entry(const char *username, const char *client_id)
{
	const struct cred *c;
	if(creds == NULL || username == NULL || client_id == NULL) return NULL;
	c = cred_slot(username, false);
	if(c == NULL || c->dead || !c->complete || c->rules == NULL || strcmp(c->client_id, client_id)) return NULL;
	return c;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	struct buf b = {.data = "{", .len = 1};
	char answer[512];
	char key[CACHE_KEY_MAX];
	char qos[4];
	const char *action;
	const char *username = mosquitto_client_username(ed->client);
	const char *client_id = mosquitto_client_id(ed->client);
	struct acl_cache_slot *slot = NULL;
	uint64_t hash = 0;
	time_t now = time(NULL);
	bool cacheable;
	const struct cred *entry;
	int n;
	(void)event;
	(void)userdata;

	if(superuser_is(ed->client)) return MOSQ_ERR_SUCCESS;
	switch(ed->access){
		case MOSQ_ACL_WRITE: action = "publish"; break;
		case MOSQ_ACL_READ: action = "receive"; break;
		case MOSQ_ACL_SUBSCRIBE: action = "subscribe"; break;
		default: return MOSQ_ERR_SUCCESS; /* unsubscribing reveals and changes nothing */
	}
	if(acl_cache_s > 0 && cache_key(key, username, client_id, ed->topic, action) == 0){
		struct acl_cache_slot *hit;
		hash = fnv1a(key);
		hit = acl_cache_find(&cache, hash, key, now, &slot);
		if(hit != NULL){
			if(hit->notify) report_subscribed(username, client_id, ed->topic);
			return MOSQ_ERR_SUCCESS;
		}
	}
	entry = complete_entry(username, client_id);
	if(entry != NULL){
		/* a listed device whose rules are all it may use: the answer is here, no call (a device
		 * publishing on foreign topics would otherwise stop the broker's thread once a message) */
		bool subscribing = ed->access == MOSQ_ACL_SUBSCRIBE;
		if(!rules_allow(entry->rules, username, ed->topic, ed->access == MOSQ_ACL_WRITE ? 'p' : 's')){
			acl_denied_locally++;
			return MOSQ_ERR_ACL_DENIED;
		}
		/* an entry the cache no longer held (evicted, or dropped by a kick of someone else) */
		cache_rule(username, client_id, ed->access == MOSQ_ACL_WRITE ? "publish" : "subscribe", ed->topic, now);
		if(subscribing) report_subscribed(username, client_id, ed->topic);
		return MOSQ_ERR_SUCCESS;
	}
	/* subscribe answers are taken from the login's rules only (prefill), never kept from a call:
	 * a call is how the core learns of a subscription it did not list */
	cacheable = ed->access != MOSQ_ACL_SUBSCRIBE;
	put_field(&b, "username", username);
	put_field(&b, "clientid", client_id);
	put_field(&b, "topic", ed->topic);
	put_field(&b, "action", action);
	put(&b, ",\"qos\":", 7);
	n = snprintf(qos, sizeof(qos), "%u", (unsigned)ed->qos);
	put(&b, qos, (size_t)n);
	put(&b, "}", 1);
	if(b.overflow) return MOSQ_ERR_ACL_DENIED;
	acl_asked[ed->access == MOSQ_ACL_WRITE ? 0 : ed->access == MOSQ_ACL_READ ? 1 : 2]++;
	if(hook_call("/mqtt/acl", b.data, b.len, answer, sizeof(answer)) != 200 || !answer_is(answer, "allow")){
		return MOSQ_ERR_ACL_DENIED;
	}
	if(cacheable && slot != NULL) acl_cache_put(&cache, slot, key, hash, now, acl_cache_s, false);
	return MOSQ_ERR_SUCCESS;
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *ed = event_data;
	struct buf b = {.data = "{", .len = 1};
	char answer[256];
	char conn[32];
	const char *client_id = mosquitto_client_id(ed->client);
	const char *username = mosquitto_client_username(ed->client);
	(void)event;
	(void)userdata;

	/* a refused CONNECT has no client id any more: only accepted clients are reported */
	superuser_set(ed->client, NULL, NULL, false); /* this connection only */
	if(client_id == NULL || username == NULL) return MOSQ_ERR_SUCCESS;
	snprintf(conn, sizeof(conn), "%p", (void *)ed->client);
	if(disconnected_topic[0]){
		/* after the connect it follows, whichever way that was told (a report or a call) */
		report(disconnected_topic, username, client_id, NULL, conn);
		return MOSQ_ERR_SUCCESS;
	}
	put_field(&b, "username", username);
	put_field(&b, "clientid", client_id);
	put_field(&b, "conn", conn);
	put(&b, "}", 1);
	if(!b.overflow && hook_call("/mqtt/disconnected", b.data, b.len, answer, sizeof(answer)) != 200){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "nxg: presence of %s not reported", client_id);
	}
	return MOSQ_ERR_SUCCESS;
}

static bool stamp_wanted(const char *topic)
{
	char filters[sizeof(stamp_topics)];
	char *save = NULL;
	bool match = false;

	snprintf(filters, sizeof(filters), "%s", stamp_topics);
	for(char *f = strtok_r(filters, " ", &save); f && !match; f = strtok_r(NULL, " ", &save)){
		if(mosquitto_topic_matches_sub(f, topic, &match) != MOSQ_ERR_SUCCESS) match = false;
	}
	return match;
}

/* `{...}` -> `{...,"<stamp_key>":<ms>}`; anything that is not a JSON object is left alone. */
static int stamp(struct mosquitto_evt_message *ed)
{
	const char *p = ed->payload;
	uint32_t start = 0, end = ed->payloadlen;
	char tail[96];
	char *out;
	int n;
	bool empty;

	while(start < end && (p[start] == ' ' || p[start] == '\t' || p[start] == '\r' || p[start] == '\n')) start++;
	while(end > start && (p[end - 1] == ' ' || p[end - 1] == '\t' || p[end - 1] == '\r' || p[end - 1] == '\n')) end--;
	if(end - start < 2 || p[start] != '{' || p[end - 1] != '}') return MOSQ_ERR_SUCCESS;
	empty = true;
	for(uint32_t i = start + 1; i < end - 1; i++){
		if(p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n'){
			empty = false;
			break;
		}
	}
	n = snprintf(tail, sizeof(tail), "%s\"%s\":%lld}", empty ? "" : ",", stamp_key, device_stamp(ed->topic));
	if(n < 0 || (size_t)n >= sizeof(tail)) return MOSQ_ERR_SUCCESS;
	out = mosquitto_malloc((size_t)(end - 1) + (size_t)n);
	if(out == NULL) return MOSQ_ERR_NOMEM;
	memcpy(out, p, end - 1);
	memcpy(out + end - 1, tail, (size_t)n);
	ed->payload = out; /* the broker frees the original */
	ed->payloadlen = (end - 1) + (uint32_t)n;
	return MOSQ_ERR_SUCCESS;
}

/* A message the core published (a superuser login: the bridge role) and stamped itself, i.e. ending
 * in `"<stamp_key>":<digits>}`: a Warning event whose ts the history already holds. A stamp of ours
 * would win in every reader and give the message a second ts. The core never passes a device's
 * own stamp key through (`/ws/gateway` drops it), so such an ending is only ever the core's. */
static bool stamped_by_core(const struct mosquitto_evt_message *ed)
{
	const char *p = ed->payload;
	size_t klen = strlen(stamp_key);
	uint32_t end = ed->payloadlen, i;

	if(ed->client == NULL || !superuser_is(ed->client)) return false;
	while(end > 0 && (p[end - 1] == ' ' || p[end - 1] == '\t' || p[end - 1] == '\r' || p[end - 1] == '\n')) end--;
	if(end == 0 || p[end - 1] != '}') return false;
	i = end - 1;
	while(i > 0 && p[i - 1] >= '0' && p[i - 1] <= '9') i--;
	if(i == end - 1 || i < klen + 4) return false;
	return p[i - 1] == ':' && p[i - 2] == '"' && !memcmp(p + i - 2 - klen, stamp_key, klen)
			&& p[i - 3 - klen] == '"' && (p[i - 4 - klen] == ',' || p[i - 4 - klen] == '{');
}

static int on_message(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_message *ed = event_data;
	char client_id[256];
	bool kick = !strcmp(ed->topic, kick_topic);
	bool feed = credentials_topic[0] && !strcmp(ed->topic, credentials_topic);
	const char *sender;
	(void)event;
	(void)userdata;

	if(!kick && !feed){
		if(!stamp_topics[0] || ed->payloadlen == 0 || !stamp_wanted(ed->topic) || stamped_by_core(ed)){
			return MOSQ_ERR_SUCCESS;
		}
		return stamp(ed);
	}
	/* the ACL let only the core publish here; checked again, these messages change who gets in
	 * (that user name logs in only with the core's secret: the hooks check it) */
	sender = ed->client ? mosquitto_client_username(ed->client) : NULL;
	if(sender == NULL || strcmp(sender, core_username)){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "nxg: %s from a login that is not the core, ignored", ed->topic);
		return MOSQ_ERR_ACL_DENIED;
	}
	if(feed){
		creds_feed(ed->payload, ed->payloadlen);
	}else if(ed->payloadlen > 0 && ed->payloadlen < sizeof(client_id)){
		/* the payload is the client id to close */
		memcpy(client_id, ed->payload, ed->payloadlen);
		client_id[ed->payloadlen] = '\0';
		acl_cache_drop_all(&cache);
		cred_del(client_id);
		mosquitto_kick_client_by_clientid(client_id, false);
	}
	return MOSQ_ERR_ACL_DENIED; /* acknowledged, routed to nobody */
}

/* ---- plugin entry points ---------------------------------------------------------------------- */

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **user_data, struct mosquitto_opt *opts, int opt_count)
{
	const char *secret = NULL;
	(void)user_data;

	plugin_id = identifier;
	for(int i = 0; i < opt_count; i++){
		const char *key = opts[i].key, *value = opts[i].value;
		if(!strcmp(key, "url")){
			if(sscanf(value, "http://%63[0-9.]:%d", hook_host, &hook_port) != 2 || hook_port <= 0 || hook_port > 65535){
				mosquitto_log_printf(MOSQ_LOG_ERR, "nxg: plugin_opt_url must be http://IPv4:port, got %s", value);
				return MOSQ_ERR_INVAL;
			}
		}else if(!strcmp(key, "secret")){
			secret = value;
		}else if(!strcmp(key, "timeout_ms")){
			timeout_ms = atoi(value);
		}else if(!strcmp(key, "auth_budget_ms")){
			auth_budget_ms = atof(value);
		}else if(!strcmp(key, "auth_free_calls")){
			auth_free_calls = (unsigned)atoi(value);
		}else if(!strcmp(key, "acl_cache_s")){
			acl_cache_s = atoi(value);
		}else if(!strcmp(key, "acl_cache_entries")){
			long entries = atol(value);
			acl_cache_size = entries > 0 ? (size_t)entries : 1;
		}else if(!strcmp(key, "kick_topic")){
			snprintf(kick_topic, sizeof(kick_topic), "%s", value);
		}else if(!strcmp(key, "subscribed_topic")){
			snprintf(subscribed_topic, sizeof(subscribed_topic), "%s", value);
		}else if(!strcmp(key, "stamp_topics")){
			snprintf(stamp_topics, sizeof(stamp_topics), "%s", value);
		}else if(!strcmp(key, "stamp_key")){
			snprintf(stamp_key, sizeof(stamp_key), "%s", value);
		}else if(!strcmp(key, "credentials_topic")){
			snprintf(credentials_topic, sizeof(credentials_topic), "%s", value);
		}else if(!strcmp(key, "credentials_max")){
			long entries = atol(value);
			credentials_max = entries > 0 ? (size_t)entries : 0;
		}else if(!strcmp(key, "connected_topic")){
			snprintf(connected_topic, sizeof(connected_topic), "%s", value);
		}else if(!strcmp(key, "refused_topic")){
			snprintf(refused_topic, sizeof(refused_topic), "%s", value);
		}else if(!strcmp(key, "disconnected_topic")){
			snprintf(disconnected_topic, sizeof(disconnected_topic), "%s", value);
		}else if(!strcmp(key, "core_username")){
			snprintf(core_username, sizeof(core_username), "%s", value);
		}else if(!strcmp(key, "exact_connack")){
			exact_connack = !strcmp(value, "true");
		}
	}
	if(secret == NULL || strlen(secret) >= sizeof(core_secret)){
		mosquitto_log_printf(MOSQ_LOG_ERR, "nxg: plugin_opt_secret (the core's internal secret) is required");
		return MOSQ_ERR_INVAL;
	}
	snprintf(core_secret, sizeof(core_secret), "%s", secret);
	if(timeout_ms <= 0) timeout_ms = 2000;
	snprintf(auth_header, sizeof(auth_header), "Authorization: Bearer %s\r\n", secret);
	if(acl_cache_init(&cache, acl_cache_size) < 0) return MOSQ_ERR_NOMEM;
	if(credentials_topic[0] && credentials_max > 0){
		for(creds_slots = 1024; creds_slots < 2 * credentials_max; creds_slots *= 2){
		}
		creds = mosquitto_calloc(creds_slots, sizeof(*creds));
		if(creds == NULL) return MOSQ_ERR_NOMEM;
	}
	mosquitto_log_printf(MOSQ_LOG_INFO, "nxg: hooks at http://%s:%d, ACL cache %d s, %zu entries", hook_host, hook_port,
			acl_cache_s, acl_cache_entries(&cache));
	if(mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL)
			|| mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL)
			|| mosquitto_callback_register(plugin_id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, NULL)
			|| mosquitto_callback_register(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL, NULL)){
		return MOSQ_ERR_UNKNOWN;
	}
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *user_data, struct mosquitto_opt *opts, int opt_count)
{
	(void)user_data;
	(void)opts;
	(void)opt_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL);
	stats_flush(time(NULL));
	hook_close();
	acl_cache_free(&cache);
	for(size_t i = 0; creds && i < creds_slots; i++){
		if(creds[i].state == CRED_USED) cred_free(&creds[i]);
	}
	mosquitto_free(creds);
	creds = NULL;
	for(int i = 0; i < RULES_DISTINCT_MAX; i++){
		mosquitto_free(rules_interned[i]);
		rules_interned[i] = NULL;
	}
	return MOSQ_ERR_SUCCESS;
}
