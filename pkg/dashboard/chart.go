package dashboard

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Charts are drawn on the server as inline SVG, so they need no script, no
// network and no library in the browser. A chart is plain data here; the
// template "chart" turns it into markup, escaping every label.

// Chart geometry in SVG user units; the SVG scales to the page's width.
const (
	chartWidth   = 640
	chartHeight  = 200
	chartLeft    = 84 // room for the value axis labels
	chartRight   = 12
	chartTop     = 12
	chartBottom  = 28 // room for the time axis labels
	chartTickNum = 4  // value ticks above zero
)

// point is one value at one time.
type point struct {
	T     time.Time
	V     float64
	Label string // shown when hovering the dot
}

// series is a line of points in one CSS class ("s0", "s1").
type series struct {
	Name   string
	Points []point
}

// chart is a finished chart.
type chart struct {
	Title  string
	Width  int
	Height int
	Lines  []chartLine
	YTicks []chartTick
	XTicks []chartTick
	// Empty says there is nothing to draw.
	Empty bool
	// Plot area corners, for the axes, and where axis labels stand.
	X0, Y0, X1, Y1   float64
	YLabelX, XLabelY float64
}

// chartLine is one series placed on the chart.
type chartLine struct {
	Name   string
	Class  string
	Points string // the polyline's "x,y x,y" list
	Dots   []chartDot
}

// chartDot is one point placed on the chart.
type chartDot struct {
	X, Y  float64
	Label string
}

// chartTick is one axis label at a position (Y for value ticks, X for time
// ticks), and how a time label is anchored: "start", "middle" or "end", so
// the first and last stay inside the chart.
type chartTick struct {
	Pos    float64
	Label  string
	Anchor string
}

// newChart lays out lines of values over time. format writes a value axis
// label. Non-finite values are left out.
func newChart(title string, format func(float64) string, lines ...series) chart {
	c := chart{
		Title: title, Width: chartWidth, Height: chartHeight,
		X0: chartLeft, Y0: chartHeight - chartBottom, X1: chartWidth - chartRight, Y1: chartTop,
		YLabelX: chartLeft - 6, XLabelY: chartHeight - 8,
	}
	var tMin, tMax time.Time
	vMax := 0.0
	n := 0
	for _, s := range lines {
		for _, p := range s.Points {
			if !finite(p.V) {
				continue
			}
			if n == 0 || p.T.Before(tMin) {
				tMin = p.T
			}
			if n == 0 || p.T.After(tMax) {
				tMax = p.T
			}
			vMax = math.Max(vMax, p.V)
			n++
		}
	}
	if n == 0 {
		c.Empty = true
		return c
	}
	top := niceCeil(vMax)
	span := tMax.Sub(tMin)
	x := func(t time.Time) float64 {
		if span <= 0 {
			return (c.X0 + c.X1) / 2 // one moment: the middle
		}
		return c.X0 + (c.X1-c.X0)*float64(t.Sub(tMin))/float64(span)
	}
	y := func(v float64) float64 { return c.Y0 - (c.Y0-c.Y1)*v/top }
	for i, s := range lines {
		line := chartLine{Name: s.Name, Class: "s" + strconv.Itoa(i%4)}
		var pts []string
		for _, p := range s.Points {
			if !finite(p.V) {
				continue
			}
			px, py := round1(x(p.T)), round1(y(math.Max(p.V, 0)))
			pts = append(pts, fmt.Sprintf("%g,%g", px, py))
			line.Dots = append(line.Dots, chartDot{X: px, Y: py, Label: p.Label})
		}
		line.Points = strings.Join(pts, " ")
		c.Lines = append(c.Lines, line)
	}
	for i := 0; i <= chartTickNum; i++ {
		v := top * float64(i) / chartTickNum
		c.YTicks = append(c.YTicks, chartTick{Pos: round1(y(v)), Label: format(v)})
	}
	layout := "2006-01-02"
	switch {
	case span < time.Hour:
		layout = "15:04:05"
	case span < 48*time.Hour:
		layout = "01-02 15:04"
	}
	if span <= 0 {
		c.XTicks = append(c.XTicks, chartTick{Pos: round1(x(tMin)), Label: tMin.UTC().Format(layout), Anchor: "middle"})
	} else {
		c.XTicks = append(c.XTicks,
			chartTick{Pos: round1(x(tMin)), Label: tMin.UTC().Format(layout), Anchor: "start"},
			chartTick{Pos: round1(x(tMax)), Label: tMax.UTC().Format(layout), Anchor: "end"})
	}
	return c
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// byteUnit returns the binary unit that suits values up to max bytes, so a
// chart of sizes has round ticks in it: 1 and "B", 1<<20 and "MiB", ...
func byteUnit(max int64) (float64, string) {
	unit, names := 1.0, []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	i := 0
	for ; i < len(names)-1 && float64(max) >= unit*1024; i++ {
		unit *= 1024
	}
	return unit, names[i]
}

// niceCeil returns a round number (1, 2 or 5 times a power of ten) at
// least v, so the value axis has readable ticks; 1 for v <= 0.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	pow := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*pow >= v {
			return m * pow
		}
	}
	return 10 * pow
}
