/*
 * The plugin's cache of the core's positive ACL answers (see nxg_plugin.c): a fixed array of
 * sets of ACL_CACHE_WAYS slots, so its size never changes whatever it is asked to hold.
 *
 * Eviction is least-recently-used within a set. Why: a device's login fills ~15 entries at once
 * (its own topics, from the core's login answer), most of which an idle device never uses. At
 * 5,000 devices that is more entries than slots, and the old rule (evict the entry expiring
 * first) threw out a publishing device's hot entry as readily as an idle device's cold one; each
 * such miss is a blocking hook call on the broker's one thread. With LRU a stream of cold entries
 * can only push out entries used less recently than themselves. An entry evicted is simply asked
 * about again: the cache never answers anything the core did not say.
 *
 * Header-only and free of Mosquitto so that tests/mosquitto/test_acl_cache.py can build it
 * alone (mosquitto/test_acl_cache.c).
 */
#ifndef NXG_ACL_CACHE_H
#define NXG_ACL_CACHE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ACL_CACHE_WAYS 8 /* set-associative: a direct-mapped cache let two hot topics evict each other,
                           * and every message of theirs became a blocking hook call */
#define ACL_CACHE_KEY_MAX 240

struct acl_cache_slot {
	uint64_t hash;
	uint64_t used; /* the cache's tick at the last hit or fill: 0 never filled */
	time_t expires;
	unsigned generation;
	bool notify; /* a subscription the core wants to hear of (subscribed_topic) */
	char key[ACL_CACHE_KEY_MAX];
};

struct acl_cache {
	struct acl_cache_slot *slots;
	size_t sets;
	unsigned generation; /* bumped to drop every entry at once (a kick) */
	uint64_t tick;
};

static inline uint64_t nxg_fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for(; *s; s++){
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

/* `entries` rounded down to whole sets (one set at least); 0 on success. */
static inline int acl_cache_init(struct acl_cache *c, size_t entries)
{
	c->sets = entries >= ACL_CACHE_WAYS ? entries / ACL_CACHE_WAYS : 1;
	c->generation = 1;
	c->tick = 0;
	c->slots = calloc(c->sets * ACL_CACHE_WAYS, sizeof(*c->slots));
	if(c->slots == NULL){
		return -1;
	}
	/* Every page touched now: calloc's pages arrive on first use, and a page fault in the middle
	 * of a CONNECT storm stalls Mosquitto's only thread (perf: 12 ms inside cache_rule). Volatile,
	 * so the compiler cannot drop the writes as redundant after calloc. */
	volatile unsigned char *page = (volatile unsigned char *)c->slots;
	size_t bytes = c->sets * ACL_CACHE_WAYS * sizeof(*c->slots);
	for(size_t at = 0; at < bytes; at += 4096){
		page[at] = 0;
	}
	return 0;
}

static inline void acl_cache_free(struct acl_cache *c)
{
	free(c->slots);
	c->slots = NULL;
}

static inline size_t acl_cache_entries(const struct acl_cache *c)
{
	return c->sets * ACL_CACHE_WAYS;
}

/* The live entry for `key` (its use noted), else NULL with `*victim` the slot to fill: one not
 * live (never filled, expired or dropped) if the set has one, else the least recently used. */
static inline struct acl_cache_slot *acl_cache_find(struct acl_cache *c, uint64_t hash, const char *key, time_t now,
		struct acl_cache_slot **victim)
{
	struct acl_cache_slot *set = &c->slots[(hash % c->sets) * ACL_CACHE_WAYS];
	struct acl_cache_slot *pick = NULL;
	bool pick_live = true;
	for(int i = 0; i < ACL_CACHE_WAYS; i++){
		struct acl_cache_slot *s = &set[i];
		bool live = s->used != 0 && s->generation == c->generation && s->expires > now;
		if(live && s->hash == hash && !strcmp(s->key, key)){
			s->used = ++c->tick;
			return s;
		}
		if(!pick_live) continue; /* a dead slot is already chosen: nothing live is evicted */
		if(pick == NULL || !live || s->used < pick->used){
			pick = s;
			pick_live = live;
		}
	}
	*victim = pick;
	return NULL;
}

/* Fill `slot` (from acl_cache_find) for `ttl_s`, spread over [ttl/2, ttl] by the hash: entries
 * made together must not all be asked again together, the broker waits for each answer. */
static inline void acl_cache_put(struct acl_cache *c, struct acl_cache_slot *slot, const char *key, uint64_t hash,
		time_t now, int ttl_s, bool notify)
{
	size_t len = strlen(key);
	if(len >= sizeof(slot->key)) return;
	memcpy(slot->key, key, len + 1);
	slot->hash = hash;
	slot->generation = c->generation;
	slot->notify = notify;
	slot->used = ++c->tick;
	slot->expires = now + ttl_s / 2 + (time_t)(hash % (uint64_t)(ttl_s / 2 + 1));
}

static inline void acl_cache_drop_all(struct acl_cache *c)
{
	c->generation++;
}

#endif
