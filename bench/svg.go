package main

import (
	"fmt"
	"math"
	"strings"
)

// svg draws the waiting figures as a plain SVG document: commands per replica against the number of
// replicas, one line per wait, and beside it the cost per waiter-second against its target. The x axes
// are logarithmic in the replica count.
func (w *waitResult) svg() string {
	const width, height, panelW, top, bottom, left = 920, 340, 360, 40, 280, 60
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	colors := []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"}
	lo, hi := math.Log10(float64(w.counts[0])), math.Log10(float64(w.counts[len(w.counts)-1]))
	if hi <= lo {
		hi = lo + 1
	}
	x := func(panel, n int) float64 {
		x0 := float64(left + panel*(panelW+left+40))
		return x0 + (math.Log10(float64(n))-lo)/(hi-lo)*panelW
	}
	type series struct {
		name  string
		color string
		dash  bool
		pts   map[int]float64
	}
	panel := func(i int, title string, ss []series) {
		ymax := 0.0
		for _, s := range ss {
			for _, v := range s.pts {
				ymax = max(ymax, v)
			}
		}
		ymax = niceCeil(ymax * 1.1)
		y := func(v float64) float64 { return bottom - v/ymax*(bottom-top) }
		x0 := x(i, w.counts[0])
		fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="14" font-weight="bold">%s</text>`+"\n", x0, title)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>`+"\n", x0, bottom, x0+panelW, bottom)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>`+"\n", x0, top, x0, bottom)
		for k := 0; k <= 4; k++ {
			v := ymax * float64(k) / 4
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x0, y(v), x0+panelW, y(v))
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-6, y(v)+4, trimFloat(v))
		}
		for _, n := range w.counts {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", x(i, n), bottom+16, n)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">replicas (log scale)</text>`+"\n", x0+panelW/2, bottom+34)
		for k, s := range ss {
			var pts []string
			for _, n := range w.counts {
				if v, ok := s.pts[n]; ok {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i, n), y(v)))
					if !s.dash {
						fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x(i, n), y(v), s.color)
					}
				}
			}
			dash := ""
			if s.dash {
				dash = ` stroke-dasharray="6,4"`
			}
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), s.color, dash)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="%s">%s</text>`+"\n", x0+panelW-150, top+14+16*k, s.color, s.name)
		}
	}
	var perReplica []series
	var costs []series
	for k, t := range w.waits {
		s := series{name: "wait " + t.String(), color: colors[k%len(colors)], pts: map[int]float64{}}
		c := series{name: s.name, color: s.color, pts: map[int]float64{}}
		for _, n := range w.counts {
			if r := w.cell(n, t); r != nil {
				s.pts[n] = r.perReplica
				c.pts[n] = r.perWaiterSecond()
			}
		}
		perReplica = append(perReplica, s)
		costs = append(costs, c)
	}
	panel(0, "Redis commands per replica", perReplica)
	target := series{name: "target", color: "#888", dash: true, pts: map[int]float64{}}
	for _, n := range w.counts {
		target.pts[n] = targetWaitCost
	}
	panel(1, "Commands per waiter-second", append(costs, target))
	b.WriteString("</svg>\n")
	return b.String()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}
