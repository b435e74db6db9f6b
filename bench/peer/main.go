// The peer row of wrt's CDC benchmark: Benthos v4.60.0, the MIT-licensed stream engine under
// Redpanda Connect, with the PII logic in Bloblang. Benthos' core has no Kafka or S3
// components (Redpanda Connect's live in its non-open repository), so this binary adds them
// through Benthos' public plugin API: an input that reads Kafka with franz-go and hands out
// one window per partition whose ack commits its offsets, and an output that writes each
// window as gzipped JSON Lines objects to S3 with aws-sdk-go-v2. The flush rules and the
// durability rule are wrt's: windows of max_records / max_bytes source records or max_age per
// partition, offsets committed only after every object of the window is written.
package main

import (
	"context"

	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
)

func main() {
	service.RunCLI(context.Background())
}
