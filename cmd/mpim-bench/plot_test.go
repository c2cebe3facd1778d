package main

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// sampleTimeline is a timeline of ten one-second intervals with a latency
// spike in the middle.
func sampleTimeline() Timeline {
	tl := newTimeline(time.Second, 10*time.Second)
	for i := range 10 {
		for k := range 1000 {
			us := int64(1000 + k*10) // 1..11 ms
			if i == 5 && k >= 990 {
				us = 250_000 // a spike in the tail
			}
			tl.record(seriesAck, time.Duration(i)*time.Second+time.Millisecond, us)
			tl.record(seriesDelivery, time.Duration(i)*time.Second+time.Millisecond, 2*us)
		}
	}
	return tl.report()
}

// countColor counts the pixels of exactly c.
func countColor(img image.Image, c color.RGBA) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			if uint8(r>>8) == c.R && uint8(g>>8) == c.G && uint8(bl>>8) == c.B && uint8(a>>8) == c.A {
				n++
			}
		}
	}
	return n
}

// countColorIn counts the pixels of exactly c in the rows [y0, y1).
func countColorIn(img image.Image, c color.RGBA, y0, y1 int) int {
	return countColor(cropped{img, image.Rect(img.Bounds().Min.X, y0, img.Bounds().Max.X, y1)}, c)
}

type cropped struct {
	image.Image
	r image.Rectangle
}

func (c cropped) Bounds() image.Rectangle { return c.r }

func TestPlotIsAPNGWithLinesAndText(t *testing.T) {
	var buf bytes.Buffer
	if err := encodePlot(&buf, plotText{Title: "pairs: 100 users, closed loop"}, sampleTimeline()); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatalf("the plot does not decode as PNG: %v", err)
	}
	if got := img.Bounds().Size(); got != (image.Point{plotW, plotH}) {
		t.Fatalf("plot size = %v, want %dx%d", got, plotW, plotH)
	}
	// Every line has many pixels in each panel (the legend's swatches
	// alone are 75 pixels per colour per panel; the lines add far more).
	half := plotH / 2
	for _, c := range []color.RGBA{colP50, colP99, colP999} {
		top, bottom := countColorIn(img, c, 0, half), countColorIn(img, c, half, plotH)
		if top < 300 || bottom < 300 {
			t.Errorf("colour %v: %d pixels in the ack panel, %d in the delivery panel; want lines in both", c, top, bottom)
		}
	}
	if n := countColor(img, colBlack); n < 500 {
		t.Errorf("only %d black pixels: title, legend and tick labels are missing", n)
	}
	if n := countColor(img, colWhite); n < plotW*plotH/2 {
		t.Errorf("only %d white pixels: the background is not white", n)
	}
}

func TestPlotShowsAnEmptySeries(t *testing.T) {
	tl := newTimeline(time.Second, 5*time.Second)
	tl.record(seriesAck, 1500*time.Millisecond, 900)
	var buf bytes.Buffer
	if err := encodePlot(&buf, plotText{Title: "storm", Empty: [numSeries]string{seriesDelivery: "none: offline"}}, tl.report()); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	// One interval: a marker in the ack panel, no line in
	// the delivery panel (which says "no samples").
	half := plotH / 2
	// One sample: its p50, p99 and p99.9 are one point, the last drawn
	// (p99.9) on top.
	if n := countColorIn(img, colP999, 0, half) - 75; n < 25 {
		t.Errorf("the single point is not drawn (%d pixels beyond the legend)", n)
	}
	for _, c := range []color.RGBA{colP50, colP99, colP999} {
		if n := countColorIn(img, c, half, plotH); n != 75 {
			t.Errorf("colour %v: %d pixels in the empty delivery panel, want only the legend's 75", c, n)
		}
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

func TestGlyphsAreWellFormed(t *testing.T) {
	for r, g := range glyphs {
		for i, row := range g {
			if len(row) != glyphW {
				t.Errorf("glyph %q row %d is %q: want %d columns", r, i, row, glyphW)
			}
			for _, c := range row {
				if c != '.' && c != '#' {
					t.Errorf("glyph %q row %d has %q", r, i, c)
				}
			}
		}
	}
	if glyphOf('A') != glyphs['a'] || glyphOf('µ') != glyphs['u'] || glyphOf('€') != boxGlyph {
		t.Error("upper case, µ or unknown characters are not mapped")
	}
	img := image.NewRGBA(image.Rect(0, 0, 100, 20))
	drawText(img, 0, 0, "1", 1, colBlack)
	// "1" has 10 pixels set in the font above.
	if n := countColor(img, colBlack); n != 10 {
		t.Errorf("drawing \"1\" set %d pixels, want 10", n)
	}
	if w := textWidth("p99.9", 2); w != (5*6-1)*2 {
		t.Errorf("textWidth = %d", w)
	}
}

func TestNiceStep(t *testing.T) {
	for _, tc := range []struct{ raw, want float64 }{
		{0.7, 1}, {1, 1}, {1.2, 2}, {3, 5}, {6, 10}, {0.03, 0.05}, {12.5, 20}, {0, 1},
	} {
		if got := niceStep(tc.raw); got != tc.want {
			t.Errorf("niceStep(%g) = %g, want %g", tc.raw, got, tc.want)
		}
	}
}
