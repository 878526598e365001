// Package config layers the configuration of every bulkbackup binary.
//
// Each binary declares its settings as flags on one [flag.FlagSet]; [Parse]
// fills that set from four layers, highest precedence first:
//
//  1. flags given on the command line,
//  2. environment variables BULK_<NAME>,
//  3. a YAML file (path from the config flag or BULK_CONFIG),
//  4. the flag defaults.
//
// One spelling table links the layers: the flag --chunk-size is the
// environment variable BULK_CHUNK_SIZE and the YAML key chunk_size. Every
// value, whatever its source, goes through the flag's own Set method, so
// parsing and validation live in one place.
//
// The package also provides [Size], a flag value for byte sizes such as
// "4MiB", and [DefaultsYAML], which renders the example files in configs/.
package config
