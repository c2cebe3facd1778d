package main

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sampleTimeline is a timeline of ten one-second intervals with a latency
// spike in the middle: p50 about 6 ms, p99 about 11 ms, p99.9 20 ms (250 ms
// in the spike).
func sampleTimeline() Timeline {
	tl := newTimeline(time.Second, 10*time.Second)
	for i := range 10 {
		for k := range 1000 {
			us := int64(1000 + k*10) // 1..11 ms
			switch {
			case i == 5 && k >= 990:
				us = 250_000 // a spike in the tail
			case k >= 998:
				us = 20_000
			}
			tl.record(seriesAck, time.Duration(i)*time.Second+time.Millisecond, us)
			tl.record(seriesDelivery, time.Duration(i)*time.Second+time.Millisecond, 2*us)
		}
	}
	return tl.report()
}

// countNear counts the pixels of r within 40 of c in every channel (the
// lines are anti-aliased, so their edges are blends with the background).
func countNear(img image.Image, c color.RGBA, r image.Rectangle) int {
	n := 0
	near := func(a uint32, b uint8) bool { return max(int(a>>8), int(b))-min(int(a>>8), int(b)) <= 40 }
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			if near(cr, c.R) && near(cg, c.G) && near(cb, c.B) {
				n++
			}
		}
	}
	return n
}

// The regions of the plot that the tests look at: each panel without the
// legend's column on the right, the legend's column beside the first
// panel, and the title's band.
var (
	ackPanel      = image.Rect(0, 40, plotW-120, plotH/2)
	deliveryPanel = image.Rect(0, plotH/2, plotW-120, plotH)
	legendColumn  = image.Rect(plotW-120, 40, plotW, plotH/2)
	titleBand     = image.Rect(0, 0, plotW, 35)
)

// decodePlot renders the plot of tl and decodes it, failing t unless it is
// a PNG of plotW x plotH pixels.
func decodePlot(t *testing.T, txt plotText, tl Timeline) image.Image {
	t.Helper()
	var buf bytes.Buffer
	if err := encodePlot(&buf, txt, tl); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatalf("the plot does not decode as PNG: %v", err)
	}
	if got := img.Bounds().Size(); got != (image.Point{plotW, plotH}) {
		t.Fatalf("plot size = %v, want %dx%d", got, plotW, plotH)
	}
	return img
}

func TestPlotIsAPNGWithLinesLegendAndText(t *testing.T) {
	img := decodePlot(t, plotText{Title: "pairs: 100 users, closed loop"}, sampleTimeline())
	for _, c := range []color.RGBA{colP50, colP99, colP999} {
		// Every line crosses each panel: many pixels of its colour.
		top, bottom := countNear(img, c, ackPanel), countNear(img, c, deliveryPanel)
		if top < 300 || bottom < 300 {
			t.Errorf("colour %v: %d pixels in the ack panel, %d in the delivery panel; want lines in both", c, top, bottom)
		}
		if n := countNear(img, c, legendColumn); n < 20 {
			t.Errorf("colour %v: %d pixels in the legend", c, n)
		}
	}
	black := color.RGBA{0, 0, 0, 255}
	if n := countNear(img, black, titleBand); n < 100 {
		t.Errorf("only %d dark pixels in the title band: the title is missing", n)
	}
	if n := countNear(img, black, img.Bounds()); n < 2000 {
		t.Errorf("only %d dark pixels: axes, labels and ticks are missing", n)
	}
	if n := countNear(img, color.RGBA{255, 255, 255, 255}, img.Bounds()); n < plotW*plotH/2 {
		t.Errorf("only %d white pixels: the background is not white", n)
	}
}

func TestPlotShowsAnEmptySeries(t *testing.T) {
	tl := newTimeline(time.Second, 5*time.Second)
	tl.record(seriesAck, 1500*time.Millisecond, 900)
	img := decodePlot(t, plotText{Title: "storm", Empty: [numSeries]string{seriesDelivery: "none: offline"}}, tl.report())
	// One sample: its p50, p99 and p99.9 are one point, the last drawn
	// (p99.9) on top.
	if n := countNear(img, colP999, ackPanel); n < 10 {
		t.Errorf("the single point is not drawn (%d pixels)", n)
	}
	// The delivery panel has no line, but says why in grey.
	for _, c := range []color.RGBA{colP50, colP99, colP999} {
		if n := countNear(img, c, deliveryPanel); n != 0 {
			t.Errorf("colour %v: %d pixels in the empty delivery panel, want none", c, n)
		}
	}
	if n := countNear(img, color.RGBA{90, 90, 90, 255}, deliveryPanel); n < 50 {
		t.Errorf("only %d grey pixels in the empty delivery panel: its note is missing", n)
	}
}

func TestPlotOfManyIntervalsIsDrawn(t *testing.T) {
	tl := newTimeline(100*time.Millisecond, 20*time.Second)
	for i := range 200 {
		tl.record(seriesAck, time.Duration(i)*100*time.Millisecond, int64(1000+i*10))
		tl.record(seriesDelivery, time.Duration(i)*100*time.Millisecond, int64(2000+i*10))
	}
	img := decodePlot(t, plotText{Title: "many"}, tl.report())
	if n := countNear(img, colP999, deliveryPanel); n < 300 {
		t.Errorf("colour %v: %d pixels in the delivery panel, want a line", colP999, n)
	}
}

func TestWritePlotWritesAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.png")
	if err := writePlot(path, plotText{Title: "t"}, sampleTimeline()); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil || cfg.Width != plotW || cfg.Height != plotH {
		t.Fatalf("DecodeConfig = %+v, %v", cfg, err)
	}
	if err := writePlot(filepath.Join(t.TempDir(), "no", "such", "dir.png"), plotText{}, sampleTimeline()); err == nil {
		t.Fatal("writing into a missing directory succeeded")
	}
}

func TestDecadeTicks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi float64
		labels string
		minor  int
	}{
		{0, 3, "1 10 100 1000", 3 * 8},
		{-1, 1, "0.1 0.2 0.5 1 2 5 10", 2 * 6},
		{-3, -2, "0.001 0.002 0.005 0.01", 6},
	} {
		var named []string
		minor := 0
		for _, tk := range (decadeTicks{}).Ticks(tc.lo, tc.hi) {
			if tk.Label == "" {
				minor++
			} else {
				named = append(named, tk.Label)
			}
		}
		if got := strings.Join(named, " "); got != tc.labels || minor != tc.minor {
			t.Errorf("ticks of 10^%g..10^%g: labels %q and %d minor, want %q and %d", tc.lo, tc.hi, got, minor, tc.labels, tc.minor)
		}
	}
}
