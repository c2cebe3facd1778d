package domain

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"testing"
)

func TestErrorfKeepsTheCauseOfW(t *testing.T) {
	cause := &fs.PathError{Op: "open", Path: "x", Err: io.ErrUnexpectedEOF}
	err := fmt.Errorf("command: %w", Errorf(EUnavailable, "eventstore: reading: %w", cause))
	if got, want := err.Error(), "command: eventstore: reading: open x: unexpected EOF"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
	if ErrorCode(err) != EUnavailable {
		t.Errorf("code %q, want %q", ErrorCode(err), EUnavailable)
	}
	if !errors.Is(err, &Error{Code: EUnavailable}) {
		t.Error("errors.Is does not find the domain error")
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Error("errors.Is does not find the cause")
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe != cause {
		t.Errorf("errors.As found %v, want the cause", pe)
	}
}

func TestErrorfKeepsEveryCauseOfSeveralW(t *testing.T) {
	err := Errorf(EInternal, "domain: %w and %w", io.EOF, fs.ErrNotExist)
	if !errors.Is(err, io.EOF) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%v: a cause is lost", err)
	}
	if err.Error() != "domain: EOF and file does not exist" {
		t.Errorf("message %q", err.Error())
	}
}

func TestErrorfWithoutWHasNoCause(t *testing.T) {
	err := Errorf(EInvalid, "domain: %v", io.EOF)
	if err.Unwrap() != nil || errors.Is(err, io.EOF) {
		t.Errorf("%v keeps a cause given with %%v", err)
	}
	if err.Error() != "domain: EOF" {
		t.Errorf("message %q", err.Error())
	}
}

func TestSentinelsMatchByCodeOnly(t *testing.T) {
	err := Errorf(ENotFound, "domain: no user %s", "u/1")
	if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) {
		t.Errorf("%v: sentinels match by code", err)
	}
	if errors.Is(ErrNotFound, err) {
		t.Error("a sentinel matches an error with a message")
	}
}
