package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/forget"
	"github.com/bulkbackup/bulkbackup/pkg/retention"
)

// forgetResult is what `forget --json` prints.
type forgetResult struct {
	DryRun bool          `json:"dry_run"`
	Policy string        `json:"policy,omitempty"`
	Groups []forgetGroup `json:"groups"`
	// Forgotten lists the snapshots forgotten (with --dry-run, those that
	// would be).
	Forgotten []string `json:"forgotten"`
}

type forgetGroup struct {
	// Group names the group, as restic does: "host db1, path /srv".
	Group  string       `json:"group"`
	Host   string       `json:"host,omitempty"`
	Path   string       `json:"path,omitempty"`
	Keep   []forgetSnap `json:"keep"`
	Remove []forgetSnap `json:"remove"`
}

type forgetSnap struct {
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
	Reasons []string  `json:"reasons,omitempty"`
}

// countFlag is a keep count: a number, or "unlimited" (-1).
type countFlag int

func (c *countFlag) String() string { return fmt.Sprint(int(*c)) }
func (c *countFlag) Set(s string) error {
	n, err := retention.ParseCount(s)
	*c = countFlag(n)
	return err
}

// keepFlags registers restic's keep flags on fs.
type keepFlags struct {
	last, hourly, daily, weekly, monthly, yearly countFlag
	within                                       retention.Duration
}

func (k *keepFlags) register(fs *flag.FlagSet) {
	fs.Var(&k.last, "keep-last", "keep the newest N snapshots (\"unlimited\": all)")
	fs.Var(&k.hourly, "keep-hourly", "keep the newest snapshot of each of the newest N hours that have one")
	fs.Var(&k.daily, "keep-daily", "keep the newest snapshot of each of the newest N days that have one")
	fs.Var(&k.weekly, "keep-weekly", "keep the newest snapshot of each of the newest N ISO weeks that have one")
	fs.Var(&k.monthly, "keep-monthly", "keep the newest snapshot of each of the newest N months that have one")
	fs.Var(&k.yearly, "keep-yearly", "keep the newest snapshot of each of the newest N years that have one")
	fs.Var(&k.within, "keep-within", "keep every snapshot newer than the newest less this period, such as 1y6m7d2h")
}

func (k *keepFlags) policy() retention.Policy {
	return retention.Policy{Last: int(k.last), Hourly: int(k.hourly), Daily: int(k.daily), Weekly: int(k.weekly),
		Monthly: int(k.monthly), Yearly: int(k.yearly), Within: k.within}
}

func runForget(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet("forget", &c)
	var keep keepFlags
	keep.register(fs)
	groupBy := fs.String("group-by", retention.DefaultGroupBy.String(), "apply the policy to each group of snapshots alike in these fields: host, path, tags (empty: one group)")
	ff := addFilterFlags(fs, "path")
	dryRun := fs.Bool("dry-run", false, "say what would be forgotten and why each snapshot is kept; forget nothing")
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	policy := keep.policy()
	if err := policy.Validate(); err != nil {
		return usageError("%v", err)
	}
	by, err := retention.ParseGroupBy(*groupBy)
	if err != nil {
		return usageError("--group-by: %v", err)
	}
	switch {
	case len(pos) > 0 && !policy.Empty():
		return usageError("give SNAPSHOT IDs or a keep policy, not both")
	case len(pos) == 0 && policy.Empty():
		return usageError("give the SNAPSHOT IDs to forget, or a keep policy (--keep-last, --keep-daily, ..., --keep-within)")
	case len(pos) > 0 && ff.filter() != nil:
		return usageError("--tag, --host and --path select snapshots for a keep policy, not for IDs")
	}
	repo, _, err := openRepo(ctx, &c, e, needMeta)
	if err != nil {
		return err
	}
	res := forgetResult{DryRun: *dryRun, Forgotten: []string{}, Groups: []forgetGroup{}}
	var groups []retention.Group
	if len(pos) > 0 {
		g := retention.Group{}
		named := make(map[string]bool)
		for _, ref := range pos {
			id, err := repo.ResolveID(ctx, ref)
			if err != nil {
				return err
			}
			if named[id] { // named twice, or by two prefixes
				continue
			}
			named[id] = true
			h, err := repo.LoadSnapshotHeader(ctx, id)
			if err != nil { // damaged: it can still be forgotten
				g.Remove = append(g.Remove, retention.Snapshot{ID: id})
				continue
			}
			g.Remove = append(g.Remove, forget.Snapshot(h))
		}
		groups = []retention.Group{g}
	} else {
		res.Policy = policy.String()
		groups, err = forget.Plan(ctx, repo, policy, by, ff.filter(), time.Now())
		if errors.Is(err, retention.ErrRemovesAll) {
			return fmt.Errorf("%w; nothing forgotten", err)
		}
		if err != nil {
			return err
		}
	}
	for _, g := range groups {
		fg := forgetGroup{Group: g.Name(), Host: g.Host, Path: g.Path, Keep: []forgetSnap{}, Remove: []forgetSnap{}}
		if len(pos) > 0 {
			fg.Group = "snapshots named"
		}
		for _, k := range g.Keep {
			fg.Keep = append(fg.Keep, forgetSnap{ID: k.ID, Time: k.Time, Reasons: k.Reasons})
		}
		for _, r := range g.Remove {
			fg.Remove = append(fg.Remove, forgetSnap{ID: r.ID, Time: r.Time})
		}
		res.Groups = append(res.Groups, fg)
	}
	if *dryRun {
		for _, g := range groups {
			for _, r := range g.Remove {
				res.Forgotten = append(res.Forgotten, r.ID)
			}
		}
	} else {
		done, err := forget.Remove(ctx, repo, groups)
		res.Forgotten = append(res.Forgotten, done...)
		if err != nil {
			return fmt.Errorf("%w (forgot %s first)", err, plural(len(done), "snapshot"))
		}
	}
	if c.json {
		return json.NewEncoder(e.stdout).Encode(res)
	}
	printForget(e, &res, len(pos) > 0)
	return nil
}

func printForget(e *env, res *forgetResult, byID bool) {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	remove := "remove"
	if res.DryRun {
		remove = "would remove"
	}
	for _, g := range res.Groups {
		if !byID {
			fmt.Fprintf(tw, "%s: keep %s, %s %d\n", g.Group, plural(len(g.Keep), "snapshot"), remove, len(g.Remove))
		}
		for _, k := range g.Keep {
			fmt.Fprintf(tw, "  keep\t%s\t%s\t%s\n", k.ID, k.Time.Local().Format("2006-01-02 15:04:05"), strings.Join(k.Reasons, ", "))
		}
		for _, r := range g.Remove {
			when := ""
			if !r.Time.IsZero() {
				when = r.Time.Local().Format("2006-01-02 15:04:05")
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t\n", remove, r.ID, when)
		}
	}
	tw.Flush()
	if res.DryRun {
		fmt.Fprintf(e.stdout, "dry run: would forget %s\n", plural(len(res.Forgotten), "snapshot"))
		return
	}
	fmt.Fprintf(e.stdout, "forgot %s", plural(len(res.Forgotten), "snapshot"))
	if len(res.Forgotten) > 0 {
		fmt.Fprint(e.stdout, `; "bulkctl prune" deletes the chunks only they named`)
	}
	fmt.Fprintln(e.stdout)
}
