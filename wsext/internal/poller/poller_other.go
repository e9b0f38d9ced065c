//go:build !linux

package poller

import "errors"

// New reports errors.ErrUnsupported: there is no epoll here.
func New[E any, H Handler[E]](int) (*Poller[E, H], error) { return nil, errors.ErrUnsupported }

// Add reports errors.ErrUnsupported.
func (p *Poller[E, H]) Add(int, H) error { return errors.ErrUnsupported }

// Remove does nothing.
func (p *Poller[E, H]) Remove(int, H) {}

func (l *loop[E, H]) run(*Poller[E, H], *runner[E]) {}

func (l *loop[E, H]) wake() {}
