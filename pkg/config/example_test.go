package config_test

import (
	"flag"
	"fmt"

	"github.com/bulkbackup/bulkbackup/pkg/config"
)

func ExampleParse() {
	fs := flag.NewFlagSet("bulkctl backup", flag.ContinueOnError)
	chunkSize := config.Size(4 << 20)
	fs.Var(&chunkSize, "chunk-size", "size of one chunk")
	repo := fs.String("r", "", "repository")
	asJSON := fs.Bool("json", false, "print JSON")

	env := map[string]string{"BULK_CHUNK_SIZE": "16MiB", "BULK_R": "ignored: set on the command line"}
	args, err := config.Parse(fs, []string{"/dev/sda", "-r", "s3:bucket", "--json"}, config.Options{
		Env: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(args, *repo, *asJSON, chunkSize)
	// Output: [/dev/sda] s3:bucket true 16MiB
}

func ExampleDefaultsYAML() {
	fs := flag.NewFlagSet("compressor", flag.ContinueOnError)
	chunkSize := config.Size(4 << 20)
	fs.Var(&chunkSize, "chunk-size", "size of one chunk")
	fs.Int("workers", 4, "compression workers")
	fmt.Print(config.DefaultsYAML(fs))
	// Output:
	// # size of one chunk
	// # (flag --chunk-size, env BULK_CHUNK_SIZE)
	// chunk_size: 4MiB
	//
	// # compression workers
	// # (flag --workers, env BULK_WORKERS)
	// workers: 4
}
