package engine

import (
	"reflect"

	"github.com/xdpnet/xdpnet/engine/accesslog"
	"github.com/xdpnet/xdpnet/engine/config"
)

// setAccessLogLocked makes the access log match cfg: started, replaced
// (a reload that changed its keys) or stopped. A replaced log's queued
// lines are written before it closes; requests that race with the swap
// may count a line dropped.
func (e *Engine) setAccessLogLocked(cfg *config.Config) error {
	cur := e.fenv.AccessLog.Load()
	if cur != nil && e.cfg != cfg && reflect.DeepEqual(cfg.AccessLog, e.cfg.AccessLog) {
		return nil
	}
	var next *accesslog.Logger
	if a := cfg.AccessLog; a != nil {
		l, err := accesslog.New(accesslog.Options{Path: a.Path, Sample: *a.Sample, Queue: a.Queue, Dropped: &e.metrics.AccessLogDropped})
		if err != nil {
			return err
		}
		next = l
	}
	e.fenv.AccessLog.Store(next)
	if cur != nil {
		cur.Close()
	}
	return nil
}

// ReopenAccessLog closes and reopens the access log file, for log
// rotation (SIGHUP: rename the file, then signal). Nothing without a
// file.
func (e *Engine) ReopenAccessLog() error {
	if l := e.fenv.AccessLog.Load(); l != nil {
		return l.Reopen()
	}
	return nil
}
