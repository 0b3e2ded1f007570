// Command native is the benchmark's baseline: what a compiled S3 client does to the same objects
// on the same MinIO, so the enforcer's rates can be read as a ratio of the storage's own speed.
//
// It runs one operation over the keys <prefix>00000 ... <prefix>N-1 of one bucket, -concurrency at
// a time, and prints one JSON line: objects, seconds, objects per second and its own CPU time per
// object (getrusage of this process), e.g.
//
//	native -mode rewrite -endpoint 127.0.0.1:9000 -bucket b -n 2000 -key ek
//
// Modes:
//
//	head     HEAD (StatObject)
//	rewrite  GET, then PutObject with If-Match (the ETag the GET returned) and SSE-KMS under -key:
//	         the least a lost-update-free in-place re-encryption needs on MinIO
//	copy     in-place CopyObject with SSE-KMS under -key (server-side; MinIO does not check
//	         If-Match on a copy, so this is not a safe rewrite there, only a reference rate)
//	put      PutObject of -size random bytes (setup: plaintext, or SSE-KMS under -key if given)
//	list     list the bucket with MinIO's metadata extension (what a scan reads): one lister, or
//	         with -fanout F and -concurrency C, C listers over the F top-level prefixes; -n is
//	         ignored and "objects" is what was listed
//
// With -fanout F the keys are <prefix>NNN/NNNNNNN (F top-level prefixes, i mod F), so a bucket
// has structure to split on.
//
// Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/encrypt"
)

type result struct {
	Mode           string  `json:"mode"`
	Objects        int     `json:"objects"`
	Errors         int64   `json:"errors"`
	Seconds        float64 `json:"seconds"`
	PerSecond      float64 `json:"per_second"`
	CPUMsPerObject float64 `json:"cpu_ms_per_object"`
	Concurrency    int     `json:"concurrency"`
}

func main() {
	mode := flag.String("mode", "head", "head | rewrite | copy | put")
	endpoint := flag.String("endpoint", "127.0.0.1:9000", "host:port of the S3 endpoint")
	bucket := flag.String("bucket", "", "bucket holding the objects")
	prefix := flag.String("prefix", "obj-", "key prefix; keys are <prefix>%05d")
	n := flag.Int("n", 1000, "number of objects")
	key := flag.String("key", "", "SSE-KMS key name for rewrite and copy")
	concurrency := flag.Int("concurrency", 32, "requests in flight")
	size := flag.Int("size", 4096, "object size for put")
	fanout := flag.Int("fanout", 0, "keys spread over this many top-level prefixes")
	flag.Parse()
	keyFanout = *fanout
	if *bucket == "" || ((*mode == "rewrite" || *mode == "copy") && *key == "") {
		fmt.Fprintln(os.Stderr, "native: -bucket is required, and -key for rewrite and copy")
		os.Exit(2)
	}
	client, err := minio.New(*endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(
			os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), ""),
		Region: "us-east-1",
	})
	if err != nil {
		fail(err)
	}
	var res result
	if *mode == "list" {
		res = list(client, *bucket, *prefix, *fanout, *concurrency)
	} else {
		op, err := operation(client, *mode, *bucket, *key, *size)
		if err != nil {
			fail(err)
		}
		res = run(op, *prefix, *n, *concurrency)
	}
	res.Mode = *mode
	_ = json.NewEncoder(os.Stdout).Encode(res)
	if res.Errors > 0 {
		os.Exit(1)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "native:", err)
	os.Exit(1)
}

type op func(ctx context.Context, object string) error

func operation(client *minio.Client, mode, bucket, key string, size int) (op, error) {
	var sse encrypt.ServerSide
	if key != "" {
		var err error
		if sse, err = encrypt.NewSSEKMS(key, nil); err != nil {
			return nil, err
		}
	}
	switch mode {
	case "put":
		body := make([]byte, size)
		if _, err := rand.Read(body); err != nil {
			return nil, err
		}
		return func(ctx context.Context, object string) error {
			opts := minio.PutObjectOptions{ServerSideEncryption: sse}
			_, err := client.PutObject(ctx, bucket, object, bytes.NewReader(body), int64(size), opts)
			return err
		}, nil
	case "head":
		return func(ctx context.Context, object string) error {
			_, err := client.StatObject(ctx, bucket, object, minio.StatObjectOptions{})
			return err
		}, nil
	case "rewrite":
		return func(ctx context.Context, object string) error {
			return rewrite(ctx, client, bucket, object, sse)
		}, nil
	case "copy":
		return func(ctx context.Context, object string) error {
			dst := minio.CopyDestOptions{Bucket: bucket, Object: object, Encryption: sse}
			src := minio.CopySrcOptions{Bucket: bucket, Object: object}
			_, err := client.CopyObject(ctx, dst, src)
			return err
		}, nil
	}
	return nil, fmt.Errorf("unknown mode %q", mode)
}

func rewrite(ctx context.Context, client *minio.Client, bucket, object string, sse encrypt.ServerSide) error {
	reader, err := client.GetObject(ctx, bucket, object, minio.GetObjectOptions{})
	if err != nil {
		return err
	}
	defer reader.Close()
	info, err := reader.Stat()
	if err != nil {
		return err
	}
	body, err := io.ReadAll(reader)
	if err != nil {
		return err
	}
	opts := minio.PutObjectOptions{ServerSideEncryption: sse, ContentType: info.ContentType}
	opts.SetMatchETag(info.ETag)
	_, err = client.PutObject(ctx, bucket, object, bytes.NewReader(body), int64(len(body)), opts)
	return err
}

func run(fn op, prefix string, n, concurrency int) result {
	var next, errors atomic.Int64
	var wg sync.WaitGroup
	ctx := context.Background()
	cpuBefore := cpuSeconds()
	started := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(ctx, keyName(prefix, i)); err != nil {
					if errors.Add(1) == 1 {
						fmt.Fprintln(os.Stderr, "native: first error:", err)
					}
				}
			}
		}()
	}
	wg.Wait()
	seconds := time.Since(started).Seconds()
	cpu := cpuSeconds() - cpuBefore
	return result{
		Objects:        n,
		Errors:         errors.Load(),
		Seconds:        seconds,
		PerSecond:      float64(n) / seconds,
		CPUMsPerObject: cpu * 1000 / float64(n),
		Concurrency:    concurrency,
	}
}

var keyFanout int

func keyName(prefix string, i int) string {
	if keyFanout > 0 {
		return fmt.Sprintf("%s%03d/%07d", prefix, i%keyFanout, i)
	}
	return fmt.Sprintf("%s%05d", prefix, i)
}

// list reads every key under prefix (the fanout's top-level prefixes concurrently) with
// metadata, as the scan's listing does.
func list(client *minio.Client, bucket, prefix string, fanout, concurrency int) result {
	prefixes := []string{prefix}
	if fanout > 0 && concurrency > 1 {
		prefixes = prefixes[:0]
		for i := range fanout {
			prefixes = append(prefixes, fmt.Sprintf("%s%03d/", prefix, i))
		}
	} else {
		concurrency = 1
	}
	var next, count, errors atomic.Int64
	var wg sync.WaitGroup
	cpuBefore := cpuSeconds()
	started := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(prefixes) {
					return
				}
				opts := minio.ListObjectsOptions{Prefix: prefixes[i], Recursive: true, WithMetadata: true}
				for info := range client.ListObjects(context.Background(), bucket, opts) {
					if info.Err != nil {
						if errors.Add(1) == 1 {
							fmt.Fprintln(os.Stderr, "native: first error:", info.Err)
						}
						break
					}
					count.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	seconds := time.Since(started).Seconds()
	n := int(count.Load())
	return result{
		Objects:        n,
		Errors:         errors.Load(),
		Seconds:        seconds,
		PerSecond:      float64(n) / seconds,
		CPUMsPerObject: (cpuSeconds() - cpuBefore) * 1000 / float64(max(n, 1)),
		Concurrency:    concurrency,
	}
}

func cpuSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	user := time.Duration(usage.Utime.Nano())
	system := time.Duration(usage.Stime.Nano())
	return (user + system).Seconds()
}
