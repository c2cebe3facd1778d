package gateway_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/mpim/mpim/domain"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

func itoa(i int) string { return strconv.Itoa(i) }

func protoMarshal(m proto.Message) ([]byte, error) { return proto.Marshal(m) }

func protoUnmarshal(b []byte, m proto.Message) error { return proto.Unmarshal(b, m) }

// metric finds a metric of a family by one label (or the only one).
func metric(tb testing.TB, reg *prometheus.Registry, name, label, value string) *dto.Metric {
	tb.Helper()
	fams, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if label == "" {
				return m
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m
				}
			}
		}
	}
	return nil
}

func counterValue(tb testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	tb.Helper()
	return metric(tb, reg, name, label, value).GetCounter().GetValue()
}

func histogramCount(tb testing.TB, reg *prometheus.Registry, name string) uint64 {
	tb.Helper()
	return metric(tb, reg, name, "", "").GetHistogram().GetSampleCount()
}

// directOf is the direct conversation of two users.
func directOf(a, b string) string {
	return string(domain.DirectConversation(domain.UserID(a), domain.UserID(b)))
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
