package gateway_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
)

func itoa(i int) string { return strconv.Itoa(i) }

func protoMarshal(m proto.Message) ([]byte, error) { return proto.Marshal(m) }

func protoUnmarshal(b []byte, m proto.Message) error { return proto.Unmarshal(b, m) }

func histogramCount(tb testing.TB, reg *prometheus.Registry, name string) uint64 {
	tb.Helper()
	return gatewaytest.Metric(tb, reg, name, "", "").GetHistogram().GetSampleCount()
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
