package main

import (
	"fmt"
	"io"
	"path"
	"text/tabwriter"
)

// selection is the content of a corpus: copies of files of this machine
// and generated files, with totals per category.
type selection struct {
	files []candidate
	gen   []generated
	count [numCategories]int
	bytes [numCategories]int64 // file bytes (not blocks)
}

func (s *selection) addFile(c candidate) {
	s.files = append(s.files, c)
	s.count[c.cat]++
	s.bytes[c.cat] += c.size
}

func (s *selection) addGenerated(g generated) {
	s.gen = append(s.gen, g)
	s.count[g.cat]++
	s.bytes[g.cat] += g.size
}

// totals returns the number of files and their bytes.
func (s *selection) totals() (n int, bytes int64) {
	for c := range numCategories {
		n += s.count[c]
		bytes += s.bytes[c]
	}
	return n, bytes
}

// dirs returns the directories the corpus's files need (not the root).
func (s *selection) dirs() int {
	seen := make(map[string]bool)
	add := func(rel string) {
		for d := path.Dir(rel); d != "." && !seen[d]; d = path.Dir(d) {
			seen[d] = true
		}
	}
	for _, f := range s.files {
		add(relPath(f.path))
	}
	for _, g := range s.gen {
		add(g.rel)
	}
	return len(seen)
}

// takeBytes adds files of pool, in selection order, while their blocks fit
// in budget; files larger than maxFile are passed over. It returns the
// blocks used.
func (s *selection) takeBytes(pool []candidate, budget, maxFile int64) int64 {
	var used int64
	for _, c := range pool {
		if budget-used < 4096 {
			break
		}
		if c.size > maxFile || used+blocks(c.size) > budget {
			continue
		}
		s.addFile(c)
		used += blocks(c.size)
	}
	return used
}

// takeCount adds up to n files of pool whose size lies in [minFile,
// maxFile], in selection order, and returns how many it added.
func (s *selection) takeCount(pool []candidate, n int, minFile, maxFile int64) int {
	added := 0
	for _, c := range pool {
		if added == n {
			break
		}
		if c.size < minFile || c.size > maxFile {
			continue
		}
		s.addFile(c)
		added++
	}
	return added
}

// generate adds generated files of category cat totalling bytes, each at
// most piece bytes, named by name(i).
func (s *selection) generate(cat category, bytes, piece int64, seed uint64, name func(i int) string) {
	for i := 0; bytes > 0; i++ {
		n := min(bytes, piece)
		s.addGenerated(generated{rel: name(i), size: n, cat: cat, seed: splitmix(seed + uint64(cat)<<32 + uint64(i))})
		bytes -= n
	}
}

// writeSummary prints the files per category.
func (s *selection) writeSummary(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "category\tfiles\tMiB\tof which generated\t\n")
	var genBytes [numCategories]int64
	for _, g := range s.gen {
		genBytes[g.cat] += g.size
	}
	for c := range numCategories {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f MiB\t\n", c, s.count[c], mib(s.bytes[c]), mib(genBytes[c]))
	}
	n, bytes := s.totals()
	fmt.Fprintf(tw, "total\t%d\t%.1f\t\t\n", n, mib(bytes))
	tw.Flush()
}

// writeManifest lists every file: category, size, and where it came from
// (a path of this machine, or "generated").
func (s *selection) writeManifest(w io.Writer) error {
	for _, f := range s.files {
		if _, err := fmt.Fprintf(w, "%s\t%d\t%s\n", f.cat, f.size, f.path); err != nil {
			return err
		}
	}
	for _, g := range s.gen {
		if _, err := fmt.Fprintf(w, "%s\t%d\tgenerated:%s\n", g.cat, g.size, g.rel); err != nil {
			return err
		}
	}
	return nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
