package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"os"
	"strconv"
)

// The plot: a PNG of the timeline, two panels (send -> ack, send ->
// delivery) with the p50, p99 and p99.9 of every interval as lines over the
// time since the measured window started, on a logarithmic millisecond
// axis. Only the standard library draws it (image/png, image/draw and the
// bitmap font of font.go).

const (
	plotW = 960
	plotH = 660
)

var (
	colWhite = color.RGBA{255, 255, 255, 255}
	colBlack = color.RGBA{0, 0, 0, 255}
	colAxis  = color.RGBA{90, 90, 90, 255}
	colGrid  = color.RGBA{225, 225, 225, 255}
	// The lines: p50, p99, p99.9.
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

// encodePlot writes the plot of tl as a PNG to w.
func encodePlot(w io.Writer, txt plotText, tl Timeline) error {
	return png.Encode(w, renderPlot(txt, tl))
}

// renderPlot draws the plot of tl.
func renderPlot(txt plotText, tl Timeline) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	draw.Draw(img, img.Bounds(), image.NewUniform(colWhite), image.Point{}, draw.Src)
	if textWidth(txt.Title, 2) <= plotW-32 {
		drawText(img, 16, 12, txt.Title, 2, colBlack)
	} else {
		drawText(img, 16, 16, txt.Title, 1, colBlack)
	}

	// One x range for both panels: from 0 to the end of the last interval.
	iv := tl.IntervalSeconds
	if iv <= 0 {
		iv = 1
	}
	xmax := iv
	for _, p := range tl.Points {
		xmax = max(xmax, p.At+iv)
	}
	const top, gap = 40, 10
	ph := (plotH - top - gap) / 2
	panels := []struct {
		name string
		get  func(IntervalLatency) Latency
	}{
		{"send -> ack latency", func(p IntervalLatency) Latency { return p.Ack }},
		{"send -> delivery latency", func(p IntervalLatency) Latency { return p.Delivery }},
	}
	for i, pn := range panels {
		y0 := top + i*(ph+gap)
		empty := txt.Empty[i]
		if empty == "" {
			empty = "no samples"
		}
		drawPanel(img, image.Rect(0, y0, plotW, y0+ph), pn.name, empty, xmax, iv, tl.Points, pn.get)
	}
	return img
}

// drawPanel draws one latency series of points into r.
func drawPanel(img *image.RGBA, r image.Rectangle, name, empty string, xmax, iv float64, points []IntervalLatency, get func(IntervalLatency) Latency) {
	area := image.Rect(r.Min.X+80, r.Min.Y+36, r.Max.X-24, r.Max.Y-46)
	drawText(img, area.Min.X, r.Min.Y+6, name, 2, colBlack)
	drawText(img, area.Min.X-72, r.Min.Y+20, "ms (log)", 1, colAxis)
	xlabel := "time since the measured window started (s)"
	drawText(img, area.Min.X+(area.Dx()-textWidth(xlabel, 1))/2, area.Max.Y+26, xlabel, 1, colAxis)

	// Legend, top right.
	lx := area.Max.X - 3*86
	for i, l := range []struct {
		name string
		c    color.RGBA
	}{{"p50", colP50}, {"p99", colP99}, {"p99.9", colP999}} {
		x := lx + i*86
		for d := range 3 {
			line(img, x, r.Min.Y+12+d, x+24, r.Min.Y+12+d, l.c)
		}
		drawText(img, x+30, r.Min.Y+7, l.name, 2, colBlack)
	}

	// The y range: whole decades around every value of the series.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range points {
		l := get(p)
		if l.Count == 0 {
			continue
		}
		for _, v := range []float64{l.P50, l.P99, l.P999} {
			v = max(v, 0.001)
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	outline(img, area, colAxis)
	if math.IsInf(lo, 1) {
		drawText(img, area.Min.X+(area.Dx()-textWidth(empty, 2))/2, area.Min.Y+area.Dy()/2-7, empty, 2, colAxis)
		xTicks(img, area, xmax)
		return
	}
	dlo, dhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	ypx := func(v float64) int {
		f := (math.Log10(max(v, 0.001)) - dlo) / (dhi - dlo)
		return area.Max.Y - int(math.Round(f*float64(area.Dy())))
	}
	xpx := func(t float64) int {
		return area.Min.X + int(math.Round(t/xmax*float64(area.Dx())))
	}
	// Decade grid lines, labelled; with few decades, 2 and 5 as well.
	for d := dlo; d <= dhi; d++ {
		mults := []float64{1}
		if dhi-dlo <= 2 {
			mults = []float64{1, 2, 5}
		}
		for _, m := range mults {
			v := m * math.Pow(10, d)
			if d == dhi && m > 1 {
				break
			}
			y := ypx(v)
			if y > area.Min.Y && y < area.Max.Y {
				line(img, area.Min.X+1, y, area.Max.X-1, y, colGrid)
			}
			line(img, area.Min.X-4, y, area.Min.X, y, colAxis)
			lbl := strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64)
			drawText(img, area.Min.X-8-textWidth(lbl, 1), y-3, lbl, 1, colBlack)
		}
	}
	xTicks(img, area, xmax)
	outline(img, area, colAxis)

	// The lines, one point per interval at the interval's middle, with a
	// marker at each point unless there are too many to tell apart.
	mark := 2
	if len(points) > 60 {
		mark = 0
	}
	for _, s := range []struct {
		c   color.RGBA
		val func(Latency) float64
	}{
		{colP50, func(l Latency) float64 { return l.P50 }},
		{colP99, func(l Latency) float64 { return l.P99 }},
		{colP999, func(l Latency) float64 { return l.P999 }},
	} {
		havePrev := false
		var px, py int
		for _, p := range points {
			l := get(p)
			if l.Count == 0 {
				continue
			}
			x, y := xpx(p.At+iv/2), ypx(s.val(l))
			if havePrev {
				thickLine(img, px, py, x, y, s.c)
			}
			for dy := -mark; dy <= mark; dy++ {
				for dx := -mark; dx <= mark; dx++ {
					setPixel(img, x+dx, y+dy, s.c)
				}
			}
			px, py, havePrev = x, y, true
		}
	}
}

// xTicks draws the time axis' ticks and labels at a round step.
func xTicks(img *image.RGBA, area image.Rectangle, xmax float64) {
	step := niceStep(xmax / 8)
	for t := 0.0; t <= xmax+step/1e6; t += step {
		x := area.Min.X + int(math.Round(t/xmax*float64(area.Dx())))
		line(img, x, area.Max.Y, x, area.Max.Y+4, colAxis)
		lbl := strconv.FormatFloat(math.Round(t*1000)/1000, 'f', -1, 64)
		drawText(img, x-textWidth(lbl, 1)/2, area.Max.Y+8, lbl, 1, colBlack)
	}
}

// niceStep returns the smallest of 1, 2 and 5 times a power of ten that is
// at least raw.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw*(1-1e-9) {
			return m * p
		}
	}
	return 10 * p
}

// outline draws r's outline.
func outline(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	line(img, r.Min.X, r.Min.Y, r.Max.X, r.Min.Y, c)
	line(img, r.Min.X, r.Max.Y, r.Max.X, r.Max.Y, c)
	line(img, r.Min.X, r.Min.Y, r.Min.X, r.Max.Y, c)
	line(img, r.Max.X, r.Min.Y, r.Max.X, r.Max.Y, c)
}

// thickLine draws a line two pixels wide.
func thickLine(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	line(img, x0, y0, x1, y1, c)
	line(img, x0+1, y0, x1+1, y1, c)
	line(img, x0, y0+1, x1, y1+1, c)
}

// line draws a one-pixel line (Bresenham).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	for {
		setPixel(img, x0, y0, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
