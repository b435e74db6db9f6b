package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"sort"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/redpanda-data/benthos/v4/public/service"
)

func init() {
	spec := service.NewConfigSpec().
		Summary("Writes each window as one gzipped JSON Lines object per destination and date; returns once every object is durable.").
		Field(service.NewStringField("bucket")).
		Field(service.NewStringField("prefix")).
		Field(service.NewStringField("endpoint")).
		Field(service.NewStringField("region")).
		Field(service.NewStringField("digest"))
	err := service.RegisterBatchOutput("wrt_s3", spec, func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
		out := &s3Output{}
		var err error
		for _, f := range []struct {
			name string
			to   *string
		}{{"bucket", &out.bucket}, {"prefix", &out.prefix}, {"endpoint", &out.endpoint}, {"region", &out.region}, {"digest", &out.digest}} {
			if *f.to, err = conf.FieldString(f.name); err != nil {
				return nil, service.BatchPolicy{}, 0, err
			}
		}
		// One window in flight, so a partition's commits stay in order (wrt writes one at a
		// time too); the input's windows are the batches, so no output batching.
		return out, service.BatchPolicy{}, 1, nil
	})
	if err != nil {
		panic(err)
	}
}

type s3Output struct {
	bucket, prefix, endpoint, region, digest string
	client                                   *s3.Client
}

func (o *s3Output) Connect(ctx context.Context) error {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(o.region))
	if err != nil {
		return err
	}
	o.client = s3.NewFromConfig(cfg, func(opts *s3.Options) {
		opts.BaseEndpoint = aws.String(o.endpoint)
		opts.UsePathStyle = true
	})
	return nil
}

// WriteBatch writes one window: a gzipped JSON Lines object per destination and date, keyed
// like wrt's, `<dest>/dt=<date>/<topic>+<partition>+<first offset>+<digest12>.jsonl.gz`.
func (o *s3Output) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	type group struct {
		dest, date string
	}
	bodies := map[group]*bytes.Buffer{}
	var topic, partition, first string
	for _, m := range batch {
		dest, _ := m.MetaGet("wrt_destination")
		date, _ := m.MetaGet("wrt_date")
		topic, _ = m.MetaGet("kafka_topic")
		partition, _ = m.MetaGet("kafka_partition")
		first, _ = m.MetaGet("window_first_offset")
		row, err := m.AsBytes()
		if err != nil {
			return err
		}
		g := group{dest, date}
		if bodies[g] == nil {
			bodies[g] = &bytes.Buffer{}
		}
		bodies[g].Write(row)
		bodies[g].WriteByte('\n')
	}
	groups := make([]group, 0, len(bodies))
	for g := range bodies {
		groups = append(groups, g)
	}
	sort.Slice(groups, func(i, j int) bool {
		return groups[i].dest+groups[i].date < groups[j].dest+groups[j].date
	})
	offset, _ := strconv.ParseInt(first, 10, 64)
	for _, g := range groups {
		var gz bytes.Buffer
		w, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed) // wrt's level too
		if _, err := w.Write(bodies[g].Bytes()); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		key := fmt.Sprintf("%s%s/dt=%s/%s+%s+%020d+%s.jsonl.gz", o.prefix, g.dest, g.date, topic, partition, offset, o.digest[:12])
		_, err := o.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket:          aws.String(o.bucket),
			Key:             aws.String(key),
			Body:            bytes.NewReader(gz.Bytes()),
			ContentType:     aws.String("application/x-ndjson"),
			ContentEncoding: aws.String("gzip"),
		})
		if err != nil {
			return fmt.Errorf("putting %s: %w", key, err)
		}
	}
	return nil
}

func (o *s3Output) Close(ctx context.Context) error { return nil }
