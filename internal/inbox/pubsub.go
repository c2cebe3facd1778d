package inbox

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Channels is how the Notify and Signal channels are published and
// subscribed on a client: with plain pub/sub (PUBLISH, SUBSCRIBE) on one
// server, with sharded pub/sub (SPUBLISH, SSUBSCRIBE) on a Redis Cluster,
// where a PUBLISH would be broadcast to every node over the cluster bus
// while an SPUBLISH reaches only the shard of the channel's slot. Both
// channels of a gateway carry its hash tag, so one SSUBSCRIBE connection
// to that shard takes both. Publisher and subscriber must agree: a
// message SPUBLISHed is never seen by a SUBSCRIBE, nor the reverse.
type Channels struct {
	sharded bool
}

// ChannelsOf returns the pub/sub of rdb: sharded when rdb is a
// *redis.ClusterClient.
func ChannelsOf(rdb redis.UniversalClient) Channels {
	_, sharded := rdb.(*redis.ClusterClient)
	return Channels{sharded: sharded}
}

// Publish sends (or queues, on a pipeline) payload to channel.
func (c Channels) Publish(ctx context.Context, on redis.Cmdable, channel string, payload any) *redis.IntCmd {
	if c.sharded {
		return on.SPublish(ctx, channel, payload)
	}
	return on.Publish(ctx, channel, payload)
}

// Subscribe subscribes a connection of its own to channels, which must
// share one hash tag (one slot on a cluster). The PubSub is returned also
// with an error, for the caller to close. Its confirmations have Kind
// SubscribeKind.
func (c Channels) Subscribe(ctx context.Context, rdb redis.UniversalClient, channels ...string) (*redis.PubSub, error) {
	if c.sharded {
		ps := rdb.SSubscribe(ctx)
		return ps, ps.SSubscribe(ctx, channels...)
	}
	ps := rdb.Subscribe(ctx)
	return ps, ps.Subscribe(ctx, channels...)
}

// SubscribeKind is the Kind of a redis.Subscription that confirms one of
// Subscribe's channels: "ssubscribe" when sharded, else "subscribe".
func (c Channels) SubscribeKind() string {
	if c.sharded {
		return "ssubscribe"
	}
	return "subscribe"
}
