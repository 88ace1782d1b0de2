package store

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// ChangesChannel is the NOTIFY channel of the versions trigger; payloads are
// "policy:N" or "directory:N".
const ChangesChannel = "okproxy_changes"

// Listen holds a dedicated connection LISTENing on ChangesChannel and calls
// onNotify for every notification until ctx ends. When the connection drops
// it reconnects with capped backoff and calls onConnect after every
// (re)connect, because notifications sent while disconnected are lost and the
// caller must re-read state.
func (s *Store) Listen(ctx context.Context, log *slog.Logger, onConnect func(), onNotify func(payload string)) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, onConnect, onNotify, func() { backoff = 100 * time.Millisecond })
		if ctx.Err() != nil {
			return
		}
		log.Warn("database listener disconnected; reconnecting", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context, onConnect func(), onNotify func(string), connected func()) error {
	cfg := s.pool.Config().ConnConfig.Copy()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+ChangesChannel); err != nil {
		return err
	}
	connected()
	onConnect()
	for {
		// Wake up now and then to notice a dead connection even when idle.
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) {
				pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
				perr := conn.Ping(pctx)
				pcancel()
				if perr != nil {
					return perr
				}
				continue
			}
			return err
		}
		onNotify(n.Payload)
	}
}
