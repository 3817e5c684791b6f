package policy

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Rules too many for a label or an argument (the kernel caps one argument
// at 128 KiB) live in a file, written as a label's value is: one rule a
// line (or ';' between), '#' comments. Errors name the file and the line.

// ReadRules reads a rules file; "-" is standard input.
func ReadRules(path string) (string, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("read rules: %w", err)
	}
	return string(data), nil
}

// ParseEgressFile parses egress rules read from path.
func ParseEgressFile(path, text string) (*Egress, error) {
	e, err := ParseEgress(fileKey(path), text)
	return e, inFile(err)
}

// ParseExecFile parses exec rules read from path.
func ParseExecFile(path, text string) (*Exec, error) {
	x, err := ParseExec(fileKey(path), text)
	return x, inFile(err)
}

func fileKey(path string) string {
	if path == "-" {
		return "<stdin>"
	}
	return path
}

func inFile(err error) error {
	var pe *Error
	if errors.As(err, &pe) {
		pe.File = true
	}
	return err
}
