package main

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"
)

func init() {
	spec := service.NewConfigSpec().
		Summary("Kafka as a consumer group member; one batch per partition window, acked by committing its offsets.").
		Field(service.NewStringListField("brokers")).
		Field(service.NewStringField("topics_regex")).
		Field(service.NewStringField("group")).
		Field(service.NewIntField("max_records")).
		Field(service.NewIntField("max_bytes")).
		Field(service.NewDurationField("max_age")).
		Field(service.NewIntField("poll_records"))
	err := service.RegisterBatchInput("wrt_kafka", spec, func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchInput, error) {
		in := &kafkaInput{log: mgr.Logger(), windows: map[partitionKey]*window{}}
		var err error
		if in.brokers, err = conf.FieldStringList("brokers"); err != nil {
			return nil, err
		}
		if in.regex, err = conf.FieldString("topics_regex"); err != nil {
			return nil, err
		}
		if in.group, err = conf.FieldString("group"); err != nil {
			return nil, err
		}
		if in.maxRecords, err = conf.FieldInt("max_records"); err != nil {
			return nil, err
		}
		if in.maxBytes, err = conf.FieldInt("max_bytes"); err != nil {
			return nil, err
		}
		if in.maxAge, err = conf.FieldDuration("max_age"); err != nil {
			return nil, err
		}
		if in.pollRecords, err = conf.FieldInt("poll_records"); err != nil {
			return nil, err
		}
		// A nacked window is handed out again, as Benthos' own inputs do.
		return service.AutoRetryNacksBatched(in), nil
	})
	if err != nil {
		panic(err)
	}
}

type partitionKey struct {
	topic     string
	partition int32
}

// window is a run of one partition's records that becomes one set of objects.
type window struct {
	key     partitionKey
	records []*kgo.Record
	bytes   int
	opened  time.Time
}

type kafkaInput struct {
	log                               *service.Logger
	brokers                           []string
	regex, group                      string
	maxRecords, maxBytes, pollRecords int
	maxAge                            time.Duration

	client  *kgo.Client
	mu      sync.Mutex // guards windows and ready against the rebalance callback
	windows map[partitionKey]*window
	ready   []*window
}

// idleTick is how long a poll with nothing to read waits, so aged windows close on time
// (wrt's source uses the same tick).
const idleTick = 250 * time.Millisecond

func (k *kafkaInput) Connect(ctx context.Context) error {
	client, err := kgo.NewClient(
		kgo.SeedBrokers(k.brokers...),
		kgo.ConsumerGroup(k.group),
		kgo.ConsumeRegex(),
		kgo.ConsumeTopics(k.regex),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MetadataMaxAge(10*time.Second),
		// Open windows of revoked partitions are dropped unwritten; the next owner starts
		// from the committed offset, as in wrt.
		kgo.OnPartitionsRevoked(k.drop),
		kgo.OnPartitionsLost(k.drop),
	)
	if err != nil {
		return err
	}
	k.client = client
	return nil
}

func (k *kafkaInput) drop(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for topic, partitions := range revoked {
		for _, p := range partitions {
			delete(k.windows, partitionKey{topic, p})
		}
	}
	kept := k.ready[:0]
	for _, w := range k.ready {
		if ps, ok := revoked[w.key.topic]; !ok || !contains(ps, w.key.partition) {
			kept = append(kept, w)
		}
	}
	k.ready = kept
}

func contains(ps []int32, p int32) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

func (k *kafkaInput) ReadBatch(ctx context.Context) (service.MessageBatch, service.AckFunc, error) {
	if k.client == nil {
		return nil, nil, service.ErrNotConnected
	}
	for {
		if w := k.next(); w != nil {
			return k.batch(w), k.ack(w), nil
		}
		poll, cancel := context.WithTimeout(ctx, idleTick)
		fetches := k.client.PollRecords(poll, k.pollRecords)
		cancel()
		if fetches.IsClientClosed() {
			return nil, nil, service.ErrEndOfInput
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				k.log.Warnf("kafka %s/%d: %v", topic, p, err)
			}
		})
		k.mu.Lock()
		fetches.EachRecord(func(r *kgo.Record) {
			key := partitionKey{r.Topic, r.Partition}
			w := k.windows[key]
			if w == nil {
				w = &window{key: key, opened: time.Now()}
				k.windows[key] = w
			}
			w.records = append(w.records, r)
			w.bytes += len(r.Key) + len(r.Value)
			if len(w.records) >= k.maxRecords || w.bytes >= k.maxBytes {
				k.ready = append(k.ready, w)
				delete(k.windows, key)
			}
		})
		k.mu.Unlock()
	}
}

// next is the first full window, else one that is max_age old.
func (k *kafkaInput) next() *window {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := time.Now()
	for key, w := range k.windows {
		if now.Sub(w.opened) >= k.maxAge {
			k.ready = append(k.ready, w)
			delete(k.windows, key)
		}
	}
	if len(k.ready) == 0 {
		return nil
	}
	w := k.ready[0]
	k.ready = k.ready[1:]
	return w
}

func (k *kafkaInput) batch(w *window) service.MessageBatch {
	first := strconv.FormatInt(w.records[0].Offset, 10)
	partition := strconv.Itoa(int(w.key.partition))
	batch := make(service.MessageBatch, 0, len(w.records))
	for _, r := range w.records {
		m := service.NewMessage(r.Value)
		m.MetaSetMut("kafka_topic", r.Topic)
		m.MetaSetMut("kafka_partition", partition)
		m.MetaSetMut("window_first_offset", first)
		m.MetaSetMut("kafka_tombstone", r.Value == nil)
		batch = append(batch, m)
	}
	return batch
}

// ack commits the window's end once the output has written every object of it.
func (k *kafkaInput) ack(w *window) service.AckFunc {
	last := w.records[len(w.records)-1]
	return func(ctx context.Context, err error) error {
		if err != nil {
			return nil // redelivered by AutoRetryNacksBatched; nothing is committed
		}
		return k.client.CommitRecords(ctx, last)
	}
}

func (k *kafkaInput) Close(ctx context.Context) error {
	if k.client != nil {
		k.client.Close()
	}
	return nil
}
