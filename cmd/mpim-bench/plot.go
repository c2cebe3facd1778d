package main

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The plot: a PNG of the timeline, two panels (send -> ack, send ->
// delivery) with the p50, p99 and p99.9 of every interval as lines over the
// time since the measured window started, on a logarithmic millisecond
// axis. gonum.org/v1/plot draws it.

// The plot's size in pixels, at plotDPI.
const (
	plotW   = 960
	plotH   = 660
	plotDPI = 96
)

// The colours of the lines: p50, p99, p99.9.
var (
	colP50  = color.RGBA{31, 119, 180, 255}
	colP99  = color.RGBA{255, 127, 14, 255}
	colP999 = color.RGBA{214, 39, 40, 255}
)

// plotText is the plot's text: the title, and what a panel without samples
// says (default "no samples").
type plotText struct {
	Title string
	Empty [numSeries]string
}

// writePlot writes the plot of tl to path.
func writePlot(path string, txt plotText, tl Timeline) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := encodePlot(f, txt, tl); err != nil {
		f.Close()
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return f.Close()
}

// encodePlot writes the plot of tl as a PNG of plotW x plotH pixels to w.
func encodePlot(w io.Writer, txt plotText, tl Timeline) error {
	c := vgimg.NewWith(vgimg.UseWH(plotW*vg.Inch/plotDPI, plotH*vg.Inch/plotDPI), vgimg.UseDPI(plotDPI))
	drawPlot(draw.New(c), txt, tl)
	_, err := vgimg.PngCanvas{Canvas: c}.WriteTo(w)
	return err
}

// drawPlot draws the title and the two panels of tl on dc.
func drawPlot(dc draw.Canvas, txt plotText, tl Timeline) {
	// One x range for both panels: from 0 to the end of the last interval.
	iv := tl.IntervalSeconds
	if iv <= 0 {
		iv = 1
	}
	xmax := iv
	for _, p := range tl.Points {
		xmax = max(xmax, p.At+iv)
	}
	panels := []struct {
		name string
		get  func(IntervalLatency) Latency
	}{
		seriesAck:      {"send → ack latency", func(p IntervalLatency) Latency { return p.Ack }},
		seriesDelivery: {"send → delivery latency", func(p IntervalLatency) Latency { return p.Delivery }},
	}
	plots := make([][]*plot.Plot, len(panels))
	empty := make([]string, len(panels))
	for i, pn := range panels {
		p, hasData := latencyPanel(pn.name, xmax, iv, tl.Points, pn.get)
		plots[i] = []*plot.Plot{p}
		if !hasData {
			empty[i] = txt.Empty[i]
			if empty[i] == "" {
				empty[i] = "no samples"
			}
		}
	}

	// The run's title above both panels, one legend right of them.
	title := plot.New().Title.TextStyle
	title.Font = sansFont(14)
	title.YAlign = draw.YTop
	dc.FillText(title, vg.Point{X: dc.Center().X, Y: dc.Max.Y - 8}, txt.Title)
	body := draw.Crop(dc, 0, 0, 0, -(title.Height(txt.Title) + 16))
	legend := plot.NewLegend()
	legend.TextStyle.Font = sansFont(12)
	legend.Left, legend.Top = true, true
	for _, s := range percentileLines(len(tl.Points)) {
		legend.Add(s.name, s.thumbs...)
	}
	legendW := legend.Rectangle(body).Size().X + 16
	legend.Draw(draw.Crop(body, body.Size().X-legendW+8, 0, 0, -24))
	body = draw.Crop(body, 0, -legendW, 0, 0)

	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadY: 12, PadLeft: 8, PadBottom: 8}
	for i, row := range plot.Align(plots, tiles, body) {
		p := plots[i][0]
		p.Draw(row[0])
		if empty[i] != "" {
			da := p.DataCanvas(row[0])
			sty := p.Title.TextStyle
			sty.Color = color.Gray{Y: 90}
			sty.YAlign = draw.YCenter
			da.FillText(sty, da.Center(), empty[i])
		}
	}
}

// sansFont returns the plot's font, Liberation Sans, at size points.
func sansFont(size vg.Length) font.Font {
	return font.Font{Typeface: "Liberation", Variant: "Sans", Size: size}
}

// percentileLine is the style of one percentile's line: its legend name,
// colour, value, and legend thumbnails.
type percentileLine struct {
	name   string
	val    func(Latency) float64
	line   draw.LineStyle
	glyph  draw.GlyphStyle // zero: no markers
	thumbs []plot.Thumbnailer
}

// percentileLines returns the lines of the p50, p99 and p99.9 for a
// series of n points, with a marker at each point unless there are too
// many to tell apart.
func percentileLines(n int) []percentileLine {
	lines := []percentileLine{
		{name: "p50", val: func(l Latency) float64 { return l.P50 }, line: draw.LineStyle{Color: colP50}},
		{name: "p99", val: func(l Latency) float64 { return l.P99 }, line: draw.LineStyle{Color: colP99}},
		{name: "p99.9", val: func(l Latency) float64 { return l.P999 }, line: draw.LineStyle{Color: colP999}},
	}
	for i := range lines {
		s := &lines[i]
		s.line.Width = vg.Points(1.5)
		s.thumbs = []plot.Thumbnailer{&plotter.Line{LineStyle: s.line}}
		if n <= 60 {
			s.glyph = draw.GlyphStyle{Color: s.line.Color, Radius: vg.Points(2), Shape: draw.CircleGlyph{}}
			s.thumbs = append(s.thumbs, &plotter.Scatter{GlyphStyle: s.glyph})
		}
	}
	return lines
}

// latencyPanel returns the plot of one latency series of points, and
// whether the series has a sample.
func latencyPanel(name string, xmax, iv float64, points []IntervalLatency, get func(IntervalLatency) Latency) (*plot.Plot, bool) {
	p := plot.New()
	p.Title.Text = name
	p.X.Label.Text = "time since the measured window started (s)"
	p.X.Min, p.X.Max = 0, xmax
	// The y axis is linear in log10 of the latency in milliseconds,
	// labelled in milliseconds (plot.LogScale misplaces the centred axis
	// label's glyph box, which pads the panel).
	p.Y.Label.Text = "latency (ms, log scale)"
	p.Add(plotter.NewGrid())
	p.Title.TextStyle.Font = sansFont(12)
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font = sansFont(11)
		a.Tick.Label.Font = sansFont(10)
	}

	// The y range: whole decades around every value of the series.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, pt := range points {
		if l := get(pt); l.Count > 0 {
			for _, v := range []float64{l.P50, l.P99, l.P999} {
				v = max(v, 0.001)
				lo, hi = min(lo, v), max(hi, v)
			}
		}
	}
	hasData := !math.IsInf(lo, 1)
	if !hasData {
		lo, hi = 1, 10
	}
	dlo, dhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	p.Y.Min, p.Y.Max = dlo, dhi
	p.Y.Tick.Marker = decadeTicks{}

	// The lines, one point per interval at the interval's middle.
	for _, s := range percentileLines(len(points)) {
		xys := plotter.XYs{}
		for _, pt := range points {
			if l := get(pt); l.Count > 0 {
				xys = append(xys, plotter.XY{X: pt.At + iv/2, Y: math.Log10(max(s.val(l), 0.001))})
			}
		}
		if len(xys) == 0 {
			continue
		}
		p.Add(&plotter.Line{XYs: xys, LineStyle: s.line})
		if s.glyph.Radius > 0 {
			p.Add(&plotter.Scatter{XYs: xys, GlyphStyle: s.glyph})
		}
	}
	return p, hasData
}

// decadeTicks marks an axis of log10 values with the values themselves: a
// labelled tick at every power of ten, and, when the range spans at most
// two decades, labelled ticks at 2 and 5 times each as well; the other
// multiples get unlabelled minor ticks.
type decadeTicks struct{}

// Ticks returns the ticks between the log10 values lo and hi.
func (decadeTicks) Ticks(lo, hi float64) []plot.Tick {
	dlo, dhi := math.Floor(lo), math.Ceil(hi)
	few := dhi-dlo <= 2
	var ticks []plot.Tick
	for d := dlo; d <= dhi; d++ {
		for m := 1.0; m < 10; m++ {
			v := m * math.Pow(10, d)
			lv := math.Log10(v)
			if lv < lo-1e-9 || lv > hi+1e-9 {
				continue
			}
			t := plot.Tick{Value: lv}
			if m == 1 || few && (m == 2 || m == 5) {
				t.Label = strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}
