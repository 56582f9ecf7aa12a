package servertls

import (
	"context"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watcher watches the directories of the files, not the files: Kubernetes
// replaces a mounted Secret by swapping its ..data link, cert-manager and
// spiffe-helper rename new files into place, and a watch on the old inode
// would see none of it.
type watcher struct {
	w     *fsnotify.Watcher
	files map[string]bool
}

func newWatcher(files []string) (*watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	out := &watcher{w: w, files: map[string]bool{}}
	dirs := map[string]bool{}
	for _, f := range files {
		f = filepath.Clean(f)
		out.files[f] = true
		if d := filepath.Dir(f); !dirs[d] {
			if err := w.Add(d); err != nil {
				w.Close()
				return nil, err
			}
			dirs[d] = true
		}
	}
	return out, nil
}

func (w *watcher) close() { _ = w.w.Close() }

// relevant: a watched file itself, or Kubernetes' ..data link swap.
func (w *watcher) relevant(name string) bool {
	name = filepath.Clean(name)
	return w.files[name] || filepath.Base(name) == "..data"
}

// run calls reload once a burst of relevant events has been quiet for
// debounce (a rotation writes the certificate and the key separately).
func (w *watcher) run(ctx context.Context, debounce time.Duration, reload func()) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case ev, ok := <-w.w.Events:
			if !ok {
				return
			}
			if w.relevant(ev.Name) {
				t.Reset(debounce)
			}
		case _, ok := <-w.w.Errors:
			if !ok {
				return
			}
		case <-t.C:
			reload()
		}
	}
}
