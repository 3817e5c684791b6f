package engine

import (
	"os"
	"testing"

	"github.com/nriguard/nriguard/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
