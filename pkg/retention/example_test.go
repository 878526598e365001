package retention_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/bulkbackup/bulkbackup/pkg/retention"
)

// Keep the newest snapshot of each of the last three days and of each of
// the last two weeks, as `bulkctl forget --keep-daily 3 --keep-weekly 2
// --dry-run` would, and say why each stays.
func ExampleApply() {
	day := func(d, h int) time.Time { return time.Date(2024, 3, d, h, 0, 0, 0, time.UTC) }
	snaps := []retention.Snapshot{
		{ID: "s1", Time: day(1, 2), Host: "db1", Path: "/srv"},
		{ID: "s2", Time: day(8, 2), Host: "db1", Path: "/srv"},
		{ID: "s3", Time: day(9, 2), Host: "db1", Path: "/srv"},
		{ID: "s4", Time: day(10, 2), Host: "db1", Path: "/srv"},
		{ID: "s5", Time: day(10, 14), Host: "db1", Path: "/srv"},
		{ID: "s6", Time: day(11, 2), Host: "db1", Path: "/srv"},
	}
	p := retention.Policy{Daily: 3, Weekly: 2}
	groups, err := retention.Apply(snaps, p, retention.DefaultGroupBy, day(11, 3))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p)
	for _, g := range groups {
		fmt.Println(g.Name())
		for _, k := range g.Keep {
			fmt.Printf("  keep   %s %s  %s\n", k.ID, k.Time.Format(time.DateTime), strings.Join(k.Reasons, ", "))
		}
		for _, r := range g.Remove {
			fmt.Printf("  remove %s %s\n", r.ID, r.Time.Format(time.DateTime))
		}
	}
	// Output:
	// keep 3 daily, 2 weekly snapshots
	// host db1, path /srv
	//   keep   s6 2024-03-11 02:00:00  daily snapshot, weekly snapshot
	//   keep   s5 2024-03-10 14:00:00  daily snapshot, weekly snapshot
	//   keep   s3 2024-03-09 02:00:00  daily snapshot
	//   remove s4 2024-03-10 02:00:00
	//   remove s2 2024-03-08 02:00:00
	//   remove s1 2024-03-01 02:00:00
}
